"""Benchmark setup: refuse debug builds; pair each of ours with its peer as a ratio.

A benchmark that compares with a peer sets ``benchmark.extra_info["side"]`` to
"ours", "peer" (etcd) or "pysyncobj" and shares a ``benchmark.group`` with its
counterparts; the JSON output then gains ``ratios`` (etcd mean / our mean per
group; > 1 means we are faster) and ``ratios_pysyncobj``, printed at the end of
the run as well, and the machine's load averages at the start and the end.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import bedrock_cp_native

_ratios: dict[str, float] = {}
_ratios_pysyncobj: dict[str, float] = {}
#: Benchmarks run with several ``extra_info["auth"]`` modes: each mode's mean
#: over the mean without authentication, per group (> 1: authentication costs).
_auth_ratios: dict[str, dict[str, float]] = {}


_load_at_start = os.getloadavg()


def pytest_configure(config: pytest.Config) -> None:
    if bedrock_cp_native.build_profile != "release":
        raise pytest.UsageError(
            "benchmarks refuse a debug build of bedrock_cp_native: run `make setup` (release)"
        )


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    groups: dict[str, dict[str, float]] = {}
    for b in output_json.get("benchmarks", []):
        side = b.get("extra_info", {}).get("side")
        if side in ("ours", "peer", "pysyncobj") and b.get("group"):
            groups.setdefault(b["group"], {})[side] = b["stats"]["mean"]
    for group, sides in groups.items():
        if "ours" in sides and "peer" in sides and sides["ours"] > 0:
            _ratios[group] = round(sides["peer"] / sides["ours"], 3)
        if "ours" in sides and "pysyncobj" in sides and sides["ours"] > 0:
            _ratios_pysyncobj[group] = round(sides["pysyncobj"] / sides["ours"], 3)
    output_json["ratios"] = dict(_ratios)
    output_json["ratios_pysyncobj"] = dict(_ratios_pysyncobj)
    by_mode: dict[str, dict[str, float]] = {}
    for b in output_json.get("benchmarks", []):
        mode = b.get("extra_info", {}).get("auth_compared")
        if mode and b.get("group"):
            by_mode.setdefault(b["group"], {})[mode] = b["stats"]["mean"]
    for group, modes in by_mode.items():
        off = modes.get("none")
        if off:
            _auth_ratios[group] = {m: round(v / off, 3) for m, v in modes.items() if m != "none"}
    output_json["auth_ratios"] = dict(_auth_ratios)
    output_json["native_build_profile"] = bedrock_cp_native.build_profile
    # How busy the machine was (1, 5 and 15 minute load averages).
    output_json["load_average_start"] = [round(x, 2) for x in _load_at_start]
    output_json["load_average_end"] = [round(x, 2) for x in os.getloadavg()]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _auth_ratios:
        terminalreporter.write_line("authentication on / off time ratios (> 1: it costs):")
        for group, modes in sorted(_auth_ratios.items()):
            terminalreporter.write_line(f"  {group}: {modes}")
    for name, ratios in (("etcd", _ratios), ("PySyncObj", _ratios_pysyncobj)):
        if ratios:
            terminalreporter.write_line(f"{name}/ours time ratios (> 1: bedrock_cp faster):")
            for group, ratio in sorted(ratios.items()):
                terminalreporter.write_line(f"  {group}: {ratio}")
