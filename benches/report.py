"""Turn one pytest-benchmark JSON into a markdown table (and PNG plots).

``python -m benches.report RESULT.json [STEM]`` writes ``STEM.md`` (default:
the JSON's path without ``.json``): per benchmark group, each system's trials,
p50, p99 (only from 100 samples on, else the max, named so), mean and
throughput, the ratio peer / ours (> 1: bedrock_cp is faster or quicker) and
the settings each system ran with (fsync, timers, authentication). With
matplotlib installed (``requirements-bench.txt``) it also writes
``STEM-failover.png`` (the failover distributions, crash with reset and
silent failure apart), ``STEM-latency-cdf.png`` and ``STEM-throughput.png``;
they need the raw samples (``--benchmark-save-data``, as ``make bench`` runs).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

SYSTEMS = {
    "ours": "bedrock_cp",
    "peer": "etcd 3.4",
    "peer-fast-timers": "etcd 3.4 (40 ms heartbeats)",
    "pysyncobj": "PySyncObj",
}
PEERS = ("peer", "peer-fast-timers", "pysyncobj")


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def _rank(xs: list[float], p: float) -> float:
    return xs[max(0, math.ceil(p * len(xs)) - 1)]


def _tail(b: dict[str, Any]) -> str:
    """p99 from 100 samples on; below that the max, named so."""
    data = sorted(b["stats"].get("data") or [])
    n = b["stats"]["rounds"]
    if data and len(data) >= 100:
        return f"p99 {_ms(_rank(data, 0.99))}"
    return f"max {_ms(b['stats']['max'])}" + (f" (of {n})" if n < 100 else "")


def _system(b: dict[str, Any]) -> str:
    info = b.get("extra_info", {})
    side = info.get("side", "ours")
    auth = info.get("settings", {}).get("auth")
    return str(SYSTEMS.get(side, side)) + (f" (auth {auth})" if auth else "")


def _groups(benchmarks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for b in benchmarks:
        groups.setdefault(b.get("group") or b["name"], []).append(b)
    return groups


def markdown(result: dict[str, Any], source: str) -> str:
    benchmarks = result.get("benchmarks", [])
    lines = [
        f"# Benchmark results: {source}",
        "",
        f"Run {result.get('datetime', '?')} on {result.get('machine_info', {}).get('node', '?')}"
        f" ({result.get('machine_info', {}).get('cpu', {}).get('count', '?')} CPUs); "
        f"load average at start {result.get('load_average_start', '?')}, "
        f"at end {result.get('load_average_end', '?')}; "
        f"native build {result.get('native_build_profile', '?')}.",
        "",
        "| measure | system | trials | p50 | tail | mean | rate or usage |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    settings: dict[str, list[str]] = {}
    ratios = [
        "| measure | " + " | ".join(f"{SYSTEMS[p]} / bedrock_cp (p50; mean)" for p in PEERS) + " |",
        "| --- | " + " | ".join("---:" for _ in PEERS) + " |",
    ]
    for group, bs in _groups(benchmarks).items():
        sides = {b.get("extra_info", {}).get("side"): b for b in bs}
        if "ours" in sides and any(p in sides for p in PEERS):
            ours = sides["ours"]["stats"]
            cells = []
            for p in PEERS:
                if p not in sides:
                    cells.append("")
                    continue
                peer = sides[p]["stats"]
                ours_cpu = sides["ours"].get("extra_info", {}).get("cpu_percent_per_node")
                peer_cpu = sides[p].get("extra_info", {}).get("cpu_percent_per_node")
                if ours_cpu and peer_cpu:  # the timed quantity is a window: compare the CPU
                    mean = sum(peer_cpu) / len(peer_cpu) / (sum(ours_cpu) / len(ours_cpu))
                    cell = f"{mean:.2f}x mean CPU per node"
                    ours_leader = sides["ours"]["extra_info"].get("leader_cpu_percent")
                    peer_leader = sides[p]["extra_info"].get("leader_cpu_percent")
                    if ours_leader and peer_leader:  # the busiest node of each side
                        cell += f", {peer_leader / ours_leader:.2f}x the leader's"
                    cells.append(cell)
                    continue
                cells.append(
                    f"{peer['median'] / ours['median']:.2f}x; {peer['mean'] / ours['mean']:.2f}x"
                )
            ratios.append(f"| {group} | " + " | ".join(cells) + " |")
        for b in sorted(bs, key=lambda b: b.get("extra_info", {}).get("side") != "ours"):
            st, info = b["stats"], b.get("extra_info", {})
            rate = info.get("writes_per_s") or info.get("transactions_per_s") or ""
            shown = f"{rate:,} per s" if rate else ""
            for name, unit in (
                ("us_per_write_dropped", "per write"),
                ("us_per_transaction", "per txn"),
            ):
                if name in info:
                    shown = f"{info[name]:,} us {unit}"
            cost = info.get("cpu_per_write") or info.get("cpu_per_transaction")
            if cost:
                shown += (", " if shown else "") + (
                    f"CPU per op: leader {cost['leader_us']:,} us, followers "
                    f"{', '.join(f'{c:,}' for c in cost['followers_us'])} us, "
                    f"client {cost['client_us']:,} us"
                )
            if "cpu_percent_per_node" in info:
                shown = f"CPU % per node {info['cpu_percent_per_node']}"
                if "wakeups_per_10s_per_node" in info:
                    shown += f"; wake-ups per 10 s {info['wakeups_per_10s_per_node']}"
                if "leader_index" in info:
                    shown += f"; the leader is node {info['leader_index'] + 1} of the list"
            lines.append(
                f"| {group} | {_system(b)} | {st['rounds']} | {_ms(st['median'])} | {_tail(b)} "
                f"| {_ms(st['mean'])} | {shown} |"
            )
            if info.get("settings"):
                described = ", ".join(f"{k} {v}" for k, v in info["settings"].items())
                settings.setdefault(f"{_system(b)}: {described}", []).append(group)
    if len(ratios) > 2:
        lines += ["", "Time ratios, peer / ours (above 1: bedrock_cp is faster):", "", *ratios]
    lines += ["", "Settings of each system, as they ran:", ""]
    for described, gs in settings.items():
        lines.append(f"- {described} ({len(gs)} measures)")
    lines += availability(benchmarks)
    lines += [
        "",
        "A tail is a p99 only from 100 samples on; below that it is the max and says so.",
    ]
    return "\n".join(lines) + "\n"


def availability(benchmarks: list[dict[str, Any]]) -> list[str]:
    """The availability-under-faults runs: their longest stretches without an
    acknowledgement, and the longest each kind of fault caused."""
    runs = [
        b for b in benchmarks if "longest_gap_ms" in b.get("extra_info", {}).get("transactions", {})
    ]
    if not runs:
        return []
    lines = [
        "",
        "Availability under faults (gaps: intervals between consecutive acknowledgements; "
        "under 100 faults a tail is the max):",
        "",
        "| nodes | operations | per s | longest gap | gaps > 50 ms: count, p50, p90, max "
        "| longest gap per fault, p50 / max |",
        "| ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for b in runs:
        info = b["extra_info"]
        for what in ("transactions", "directory_writes"):
            f = info[what]
            g = f["gaps_over_50ms"]
            per_fault = "; ".join(
                f"{kind} ({k['faults']}): {k['p50_ms']:.0f} / {k['max_ms']:.0f} ms"
                for kind, k in f["by_fault"].items()
            )
            lines.append(
                f"| {info['nodes']} | {what.replace('_', ' ')} | {f['per_second']:,} "
                f"| {f['longest_gap_ms']:.0f} ms | {g['count']}, {g['p50_ms']} / {g['p90_ms']} "
                f"/ {g['max_ms']} ms | {per_fault} |"
            )
    seeds = ", ".join(
        f"{b['extra_info']['nodes']} nodes seed {b['extra_info']['seed']}" for b in runs
    )
    lines += ["", f"Schedules: {seeds} (replay with `BEDROCK_AVAIL_SEED`)."]
    return lines


def plots(result: dict[str, Any], stem: Path) -> list[Path]:
    """PNG plots next to ``stem``; none without matplotlib or raw samples."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    groups = _groups(result.get("benchmarks", []))
    written: list[Path] = []

    failover = [(g, b) for g, bs in groups.items() if "failover" in g for b in bs]
    if failover and all(b["stats"].get("data") for _, b in failover):
        kinds = [
            ("crash: kill -9 of the leader (the kernel resets its connections)", "crash"),
            ("silent failure: SIGSTOP of the leader (no reset)", "partition"),
        ]
        fig, axes = plt.subplots(2, 1, figsize=(9, 0.6 * len(failover) + 2.5))
        for ax, (title, word) in zip(axes, kinds, strict=True):
            rows = [(g, b) for g, b in failover if g.startswith(word)]
            if not rows:
                ax.set_visible(False)
                continue
            ax.boxplot(
                [[x * 1e3 for x in b["stats"]["data"]] for _, b in rows],
                orientation="horizontal",
                tick_labels=[
                    _system(b)
                    + (" (attempt timeout 0.1 s)" if "0.1 s" in g else "")
                    + (" (back to back)" if "back to back" in g else "")
                    + (" (cluster side)" if "cluster side" in g else "")
                    for g, b in rows
                ],
            )
            ax.set_xscale("log")
            ticks: list[float] = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.set_title(title, fontsize=10)
        axes[-1].set_xlabel("ms from the fault to the first acknowledged write (log scale)")
        fig.tight_layout()
        written.append(stem.with_name(stem.name + "-failover.png"))
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    latency = [(g, b) for g, bs in groups.items() if "latency" in g for b in bs]
    if latency and all(b["stats"].get("data") for _, b in latency):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for _, b in latency:
            xs = sorted(x * 1e3 for x in b["stats"]["data"])
            ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=_system(b))
        ax.set_xscale("log")
        ticks = [0.5, 1, 2, 5, 10, 20, 50, 100, 200]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("ms per write (log scale)")
        ax.set_ylabel("fraction of writes")
        ax.set_title("Latency CDF, one client, one write at a time")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(stem.with_name(stem.name + "-latency-cdf.png"))
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    rates = [
        (g, b)
        for g, bs in groups.items()
        for b in bs
        if b.get("extra_info", {}).get("writes_per_s")
    ]
    if rates:
        fig, ax = plt.subplots(figsize=(8, 0.5 * len(rates) + 1.5))
        ax.barh(
            [f"{_system(b)}, {b['extra_info'].get('connections', '?')} conn." for _, b in rates],
            [b["extra_info"]["writes_per_s"] for _, b in rates],
        )
        ax.set_xlabel(
            f"writes per s, {rates[0][1]['extra_info'].get('writers')} concurrent writers"
        )
        ax.set_title("Write throughput against concurrent clients")
        fig.tight_layout()
        written.append(stem.with_name(stem.name + "-throughput.png"))
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print("usage: python -m benches.report RESULT.json [STEM]", file=sys.stderr)
        return 2
    source = Path(argv[0])
    stem = Path(argv[1]) if len(argv) > 1 else source.with_suffix("")
    result = json.loads(source.read_text())
    stem.with_suffix(".md").write_text(markdown(result, source.name))
    written = plots(result, stem)
    print(f"wrote {stem.with_suffix('.md')}" + "".join(f", {p}" for p in written))
    if not written:
        print("no plots (matplotlib missing or no raw samples)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
