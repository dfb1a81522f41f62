"""The interim demo runs end to end; bad CLI input gives one line, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bedrock_cp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_json_reports_no_loss() -> None:
    proc = _run("demo", "--core", "--json", "--writes", "40")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert report["lost"] == 0
    assert report["acknowledged"] == 81
    assert report["new_leader"] != report["first_leader"]


def test_bad_argument_is_one_line_without_traceback() -> None:
    proc = _run("demo", "--core", "--nodes", "0")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "--nodes must be between 1 and 9" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cluster_demo_json_loses_nothing_across_the_failover() -> None:
    proc = _run("demo", "--json", "--seconds", "2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for key in ("acknowledged", "verified", "lost", "failover_ms", "recovery_ms", "epochs"):
        assert key in report, key
    assert report["lost"] == 0
    assert report["acknowledged"] == report["verified"] > 0
    assert report["epochs"][1] > report["epochs"][0]
    phases = [p["phase"] for p in report["timeline"]["phases"]]
    assert phases[0] == "validate_layout" and phases[-1] == "persist"


def test_cluster_demo_refuses_too_few_nodes() -> None:
    proc = _run("demo", "--nodes", "2")
    assert proc.returncode == 1
    assert "between 3 and 9" in proc.stderr
    assert "Traceback" not in proc.stderr
