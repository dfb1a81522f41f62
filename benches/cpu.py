"""CPU used by processes, read from the scheduler, for benches that report it.

A process's CPU time is the sum over its threads of ``/proc/<pid>/task/*/schedstat``
(its first field: nanoseconds on a CPU, user and kernel), so the WAL threads and
the kernel's share of each loopback send (charged to the sender) count too.

:class:`CpuPerOperation` turns that into CPU per operation of a throughput or
latency bench: per node (the leader apart from its followers) and for this
process, the client. A rate says how fast; this says what each operation costs
and where, which on a 2-core machine decides the rate (every process of the
cluster and the client share those cores).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bedrock_cp.cluster import LocalCluster


def usage(pid: int) -> tuple[float, int]:
    """CPU seconds and voluntary context switches of every thread of ``pid``."""
    cpu, switches = 0.0, 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu += int((task / "schedstat").read_text().split()[0]) / 1e9
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    switches += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return cpu, switches


def cpu_seconds(pid: int) -> float:
    """CPU seconds of every thread of ``pid``."""
    return usage(pid)[0]


class CpuPerOperation:
    """CPU per operation over the measured rounds of a bench.

    ``nodes`` maps each node id to its process id; ``leader`` is the node that
    leads (it also runs the Director's roles: sequencer, proxies, resolver).
    :meth:`pedantic` runs a bench's warm-up, then its measured rounds inside
    :meth:`counting`: the CPU is read once before and once after them, never
    inside a timed round.
    """

    def __init__(self, nodes: dict[int, int], leader: int) -> None:
        self.nodes = dict(nodes)
        self.leader = leader
        self._node_cpu = dict.fromkeys(self.nodes, 0.0)
        self._client_cpu = 0.0

    @classmethod
    def of(cls, cluster: LocalCluster, leader: int) -> CpuPerOperation:
        """The meter of ``cluster``'s node processes; node ``leader`` leads."""
        return cls({n: p.pid for n, p in cluster.procs.items()}, leader)

    def pedantic(self, benchmark: Any, fn: Callable[[], None], *, rounds: int, warmup: int) -> None:
        """``warmup`` calls of ``fn`` (not counted), then ``rounds`` timed by
        ``benchmark`` (pytest-benchmark's pedantic mode), their CPU counted."""
        for _ in range(warmup):
            fn()
        with self.counting():
            benchmark.pedantic(fn, rounds=rounds)

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        before = {n: cpu_seconds(pid) for n, pid in self.nodes.items()}
        client = time.process_time()
        yield
        self._client_cpu += time.process_time() - client
        for n, pid in self.nodes.items():
            self._node_cpu[n] += cpu_seconds(pid) - before[n]

    def per_operation(self, operations: int) -> dict[str, Any]:
        """Microseconds of CPU per operation, over ``operations`` counted: the
        leader's, each follower's (in node id order) and the client's."""
        ops = max(1, operations)

        def us(seconds: float) -> float:
            return round(seconds / ops * 1e6, 1)

        return {
            "leader_us": us(self._node_cpu[self.leader]),
            "followers_us": [us(c) for n, c in sorted(self._node_cpu.items()) if n != self.leader],
            "client_us": us(self._client_cpu),
            "operations": operations,
        }
