"""An idle 3-node cluster: CPU and memory of each node process.

Target: an idle node uses <= 1 % of one core and <= 50 MB RSS. The bench
starts 3 node processes (default timers: 10 ms ticks, 50 ms heartbeats), lets
them settle for ``BEDROCK_IDLE_SETTLE`` seconds (default 5) after the Director
built the data plane, then reads each process's CPU time from /proc over a
window of ``BEDROCK_IDLE_WINDOW`` seconds (default 10: with 3 s, one clock tick
of CPU time was 0.33 % and run-to-run noise hid changes of 15 %). Each node's
figure is also given as CPU seconds per 10 s, the unit etcd was measured in.
The timed quantity is the window itself; the figures are in ``extra_info``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import uvloop

from bedrock_cp.cluster import LocalCluster
from tests.clusters import cluster_recovered

WINDOW = float(os.environ.get("BEDROCK_IDLE_WINDOW", "10"))
SETTLE = float(os.environ.get("BEDROCK_IDLE_SETTLE", "5"))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_idle_node_cpu_and_rss(benchmark: Any) -> None:
    cluster = LocalCluster(3)
    cluster.start()
    try:
        uvloop.run(cluster_recovered(cluster))  # the Director has built the data plane too
        time.sleep(SETTLE)  # startup work (compactions, the first retirements) is over
        pids = [p.pid for p in cluster.procs.values()]
        result: dict[str, Any] = {}

        def window() -> None:
            before = {pid: _cpu_seconds(pid) for pid in pids}
            start = time.monotonic()
            time.sleep(WINDOW)  # the measurement window: the nodes are left alone
            elapsed = time.monotonic() - start
            cpu = [(_cpu_seconds(pid) - before[pid]) / elapsed * 100 for pid in pids]
            result["cpu_percent_per_node"] = [round(c, 2) for c in cpu]
            result["cpu_seconds_per_10s_per_node"] = [round(c / 10, 3) for c in cpu]
            result["window_s"] = round(elapsed, 2)
            result["rss_mb_per_node"] = [round(_rss_mb(pid), 1) for pid in pids]

        benchmark.group = "idle node CPU (Director and data plane running)"
        benchmark.extra_info["settings"] = {"auth": cluster.auth, "fsync": cluster.fsync}
        benchmark.pedantic(window, rounds=1, iterations=1)
        benchmark.extra_info.update(result)
        assert len(result["cpu_percent_per_node"]) == 3
    finally:
        cluster.stop()
        cluster.cleanup()
