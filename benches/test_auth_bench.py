"""What authentication costs: the same cluster benchmarks with it on and off.

Each measure runs three times in the same session against a 3-node
``LocalCluster`` (fsync on, default timers), once per ``auth`` mode: ``none``
(off), ``tls`` (mutual TLS 1.3, the default) and ``secret`` (the HMAC
handshake; traffic itself is not encrypted). ``benches/conftest.py`` reports
each mode's mean over the mean with authentication off, per group
(``auth_ratios``; 1.0: free).

- write latency: one client, one directory write at a time.
- write throughput: 64 concurrent writers x 16 writes per round.
- crash failover: SIGKILL the leader, time until a write is acknowledged (the
  client reconnects, so a new handshake is on this path).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from .cluster_sides import WRITERS, OursSide, measure_throughput, percentiles

LATENCY_ROUNDS = 300
THROUGHPUT_ROUNDS = 12
CRASH_TRIALS = 15


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        yield r


@pytest.fixture(params=["none", "tls", "secret"])
def side(
    request: pytest.FixtureRequest, runner: asyncio.Runner, tmp_path: Path
) -> Iterator[OursSide]:
    s = OursSide(runner, tmp_path / request.param, auth=request.param)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def _label(benchmark: Any, s: OursSide, group: str) -> None:
    benchmark.group = group
    benchmark.extra_info["auth_compared"] = s.cluster.auth
    benchmark.extra_info["settings"] = s.settings


def test_auth_write_latency(benchmark: Any, runner: asyncio.Runner, side: OursSide) -> None:
    _label(benchmark, side, "auth: directory write latency (1 client)")
    runner.run(side.settle())
    benchmark.pedantic(lambda: runner.run(side.write()), rounds=LATENCY_ROUNDS, warmup_rounds=10)
    assert benchmark.stats is not None
    benchmark.extra_info.update(percentiles(list(benchmark.stats.stats.data)))


def test_auth_write_throughput(benchmark: Any, runner: asyncio.Runner, side: OursSide) -> None:
    _label(benchmark, side, f"auth: directory write throughput ({WRITERS} clients)")
    measure_throughput(benchmark, runner, side, THROUGHPUT_ROUNDS)


def test_auth_crash_failover(benchmark: Any, runner: asyncio.Runner, side: OursSide) -> None:
    _label(benchmark, side, "auth: crash failover (SIGKILL leader -> write acked)")

    def setup() -> tuple[tuple[int], dict[str, Any]]:
        return (runner.run(side.settle()),), {}

    def trial(leader: int) -> None:
        side.lose_leader(leader, signal.SIGKILL)
        runner.run(side.write_after_failover())

    benchmark.pedantic(trial, setup=setup, rounds=CRASH_TRIALS, warmup_rounds=0)
    assert benchmark.stats is not None
    benchmark.extra_info.update(percentiles(list(benchmark.stats.stats.data)))
