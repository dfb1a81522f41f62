"""Coordinators as a real 3-node cluster on 127.0.0.1, beside etcd and PySyncObj.

Each measure runs three times in the same session, once against bedrock_cp
(``side="ours"``: 3 ``bedrock-cp node`` processes, fsync on, default timers:
tick 10 ms, heartbeat 50 ms, election timeout 200 ms; a follower gives up on a
silent leader after a window learned from its heartbeat gaps, about 120 ms on
a quiet host, at most 400 ms; writes are
``Client.register`` through the product's own client) and once against a real
3-member etcd 3.4 cluster (``side="peer"``: ``PUT`` of the same content through
the v3 HTTP/JSON gateway) and once against 3 PySyncObj processes
(``side="pysyncobj"``, its default timers, a journal it never fsyncs; see
``pysyncobj_side.py``), driven the same way. Only one cluster runs at a time.
``benches/conftest.py`` turns each pair into a ratio, peer time / our time (> 1:
we are faster).

etcd settings: heartbeat 40 ms, election timeout 200 ms. etcd refuses an
election timeout below 5 x the heartbeat (so 50/200 is illegal); 40/200 keeps
our lower bound, and etcd randomizes each timeout over 200-360 ms. etcd always
fsyncs its WAL. The settings in force are in each result's ``extra_info``.

- crash failover: SIGKILL the leader, then time until the first write is
  acknowledged by the survivors (the clock starts at the kill). Ours also
  splits each trial (``extra_info``): ``cluster_*`` from the signal until a
  probe that writes to every survivor directly every 2 ms (no discovery, no
  backoff, running beside the client) has a write committed, and
  ``client_added_*`` from then until the client's own write is acknowledged.
- partition failover: SIGSTOP the leader (no reset: its connections stay
  open), same clock; SIGCONT after the trial. Each trial starts
  ``STEADY_SECONDS`` (2 s) after the cluster settled, on every side: a silent
  failure strikes a cluster that has been running, and our followers learn
  their window from the heartbeats they time (etcd's and PySyncObj's
  timeouts are fixed: the wait changes nothing for them).
- the same back to back (ours only, not paired): each trial right after the
  previous leader rejoined, ~0.1 s of steady state: every node has timed too
  few heartbeats (fewer than 8 gaps) and waits the election timeout.
- the cluster's part of partition failover (ours only, not paired): SIGSTOP ->
  a survivor answers ``Ping`` as the ready leader of a later term, no client
  write; the difference to the paired figure is the client's part.
- the same with our client's attempt timeout cut to 0.1 s (ours only, not
  paired): separates the client's share of partition failover from the cluster's.
- write latency: one client, one write at a time, to a settled cluster.
- write throughput: 64 independent clients x 16 writes per round, each client
  on its own connection to the leader (how etcd is usually driven); writes/s
  in ``extra_info``. Ours: 64 ``Client`` objects; etcd: 64 keep-alive HTTP
  connections to the leader.
- the same 64 writers as tasks sharing one client (one multiplexed
  connection; ours only, not paired).

Between failover trials (untimed, in each round's setup) the lost node is
restarted or resumed and the bench waits until a leader is ready and every node
has applied a fresh write. During a failover our side writes with its client
as users would (follow the leader, retry until ``request_timeout``); etcd gets
the most favourable client we could write: a new attempt every 10 ms,
round-robin over the survivors, earlier attempts left running, first success
wins (PySyncObj gets the same client). So the failover times of etcd are the
time until it *can* commit, plus at most ~10 ms.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from .cluster_sides import (
    WRITERS,
    EtcdSide,
    OursSide,
    PysyncobjSide,
    Side,
    measure_throughput,
    percentiles,
)
from .cpu import CpuPerOperation

CRASH_TRIALS = 25
PARTITION_TRIALS = 24
LATENCY_ROUNDS = 300
THROUGHPUT_ROUNDS = 12
SHORT_ATTEMPT_TIMEOUT = 0.1

SIDES: dict[str, Callable[[asyncio.Runner, Path], Side]] = {
    "ours": OursSide,
    "peer": EtcdSide,
    "pysyncobj": PysyncobjSide,
}


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        yield r


@pytest.fixture(params=list(SIDES))
def side(request: pytest.FixtureRequest, runner: asyncio.Runner, tmp_path: Path) -> Iterator[Side]:
    """A started cluster of one side; every process it started is stopped afterwards."""
    s = SIDES[request.param](runner, tmp_path / request.param)
    try:
        s.start()
        yield s
    except BaseException:
        _print_logs(s)
        raise
    finally:
        s.stop()


def _print_logs(s: Side) -> None:
    if isinstance(s, EtcdSide):
        print(s.cluster.log_tails())
        return
    if isinstance(s, PysyncobjSide):
        for log in sorted(s.cluster.directory.glob("*.log")):
            print(f"--- {log.name} ---\n" + "\n".join(log.read_text().splitlines()[-15:]))
        return
    for node_id in s.cluster.addresses:
        path = s.cluster.log_path(node_id)
        if path.exists():
            print(f"--- node {node_id} log tail ---")
            print("\n".join(path.read_text(errors="replace").splitlines()[-15:]))


def _label(benchmark: Any, s: Side, group: str) -> None:
    benchmark.group = group
    benchmark.extra_info["side"] = s.name
    benchmark.extra_info["settings"] = s.settings


def _failover(
    benchmark: Any, runner: asyncio.Runner, s: Side, sig: int, trials: int, *, steady: float = 0.0
) -> None:
    """``trials`` times: settle, wait ``steady`` seconds (untimed), then time
    losing the leader by ``sig`` until a write is acknowledged."""

    def setup() -> tuple[tuple[int], dict[str, Any]]:
        leader = runner.run(s.settle())
        if steady:
            runner.run(asyncio.sleep(steady))
        return (leader,), {}

    def trial(leader: int) -> None:
        s.lose_leader(leader, sig)
        runner.run(s.write_after_failover())

    benchmark.pedantic(trial, setup=setup, rounds=trials, warmup_rounds=0)
    assert benchmark.stats is not None
    benchmark.extra_info.update(percentiles(list(benchmark.stats.stats.data)))
    if isinstance(s, OursSide):
        benchmark.extra_info.update(s.failover_split())


def test_crash_failover(benchmark: Any, runner: asyncio.Runner, side: Side) -> None:
    _label(benchmark, side, "crash failover (SIGKILL leader -> write acked)")
    _failover(benchmark, runner, side, signal.SIGKILL, CRASH_TRIALS)


STEADY_SECONDS = 2.0


def test_partition_failover(benchmark: Any, runner: asyncio.Runner, side: Side) -> None:
    _label(benchmark, side, "partition failover (SIGSTOP leader -> write acked)")
    _failover(benchmark, runner, side, signal.SIGSTOP, PARTITION_TRIALS, steady=STEADY_SECONDS)


def test_partition_failover_ours_back_to_back(
    benchmark: Any, runner: asyncio.Runner, tmp_path: Path
) -> None:
    """Diagnostic, not paired: partition failovers back to back.

    As ``test_partition_failover[ours]``, but each trial starts as soon as
    the cluster settled after the previous one (about 0.1 s): no node has
    timed the 8 heartbeat gaps its window needs, so each waits the election
    timeout (200 ms) before it suspects the silent leader.
    """
    s = OursSide(runner, tmp_path / "ours-back-to-back")
    try:
        s.start()
        _label(benchmark, s, "partition failover, ours, back to back (diagnostic)")
        _failover(benchmark, runner, s, signal.SIGSTOP, PARTITION_TRIALS)
    finally:
        s.stop()


def test_partition_failover_ours_cluster_side(
    benchmark: Any, runner: asyncio.Runner, tmp_path: Path
) -> None:
    """Diagnostic, not paired: the cluster's part of our partition failover.

    SIGSTOP the leader -> a survivor answers ``Ping`` as the ready leader of a
    later term (elected, its first entry committed), each survivor asked every
    5 ms; no client write. Subtracted from ``test_partition_failover[ours]``
    it leaves the client's part (noticing the stopped leader, finding the new
    one, the write itself).
    """
    s = OursSide(runner, tmp_path / "ours-cluster-side")
    try:
        s.start()
        _label(benchmark, s, "partition failover, ours, cluster side: SIGSTOP -> new leader ready")

        def setup() -> tuple[tuple[int, int], dict[str, Any]]:
            leader = runner.run(s.settle())
            runner.run(asyncio.sleep(STEADY_SECONDS))
            return (leader, runner.run(s.term())), {}

        def trial(leader: int, term: int) -> None:
            s.lose_leader(leader, signal.SIGSTOP)
            runner.run(s.survivor_ready(term))

        benchmark.pedantic(trial, setup=setup, rounds=PARTITION_TRIALS, warmup_rounds=0)
        assert benchmark.stats is not None
        benchmark.extra_info.update(percentiles(list(benchmark.stats.stats.data)))
    finally:
        s.stop()


def test_partition_failover_ours_short_attempt_timeout(
    benchmark: Any, runner: asyncio.Runner, tmp_path: Path
) -> None:
    """Diagnostic, not paired: how much of our partition failover is the client's.

    A stopped leader is only noticed by the client's attempt timeout (default
    0.5 s) or its hedged attempts; this variant uses 0.1 s to show how much
    of the client's share that timeout is.
    """
    s = OursSide(runner, tmp_path / "ours-short", attempt_timeout=SHORT_ATTEMPT_TIMEOUT)
    try:
        s.start()
        _label(benchmark, s, "partition failover, ours, client attempt_timeout 0.1 s (diagnostic)")
        _failover(benchmark, runner, s, signal.SIGSTOP, PARTITION_TRIALS, steady=STEADY_SECONDS)
    finally:
        s.stop()


def test_write_latency(benchmark: Any, runner: asyncio.Runner, side: Side) -> None:
    _label(benchmark, side, "directory write latency (1 client, sequential)")
    leader = runner.run(side.settle())

    def one() -> None:
        runner.run(side.write())

    if not isinstance(side, OursSide):
        benchmark.pedantic(one, rounds=LATENCY_ROUNDS, warmup_rounds=10)
    else:
        meter = CpuPerOperation.of(side.cluster, leader)
        meter.pedantic(benchmark, one, rounds=LATENCY_ROUNDS, warmup=10)
        benchmark.extra_info["cpu_per_write"] = meter.per_operation(LATENCY_ROUNDS)
    assert benchmark.stats is not None
    benchmark.extra_info.update(percentiles(list(benchmark.stats.stats.data)))


def test_write_throughput(benchmark: Any, runner: asyncio.Runner, side: Side) -> None:
    _label(benchmark, side, f"directory write throughput ({WRITERS} clients, one connection each)")
    measure_throughput(benchmark, runner, side, THROUGHPUT_ROUNDS)


def test_write_throughput_ours_one_multiplexed_client(
    benchmark: Any, runner: asyncio.Runner, tmp_path: Path
) -> None:
    s = OursSide(runner, tmp_path / "ours-mux")
    try:
        s.start()
        _label(benchmark, s, f"directory write throughput, ours, {WRITERS} tasks on one client")
        measure_throughput(benchmark, runner, s, THROUGHPUT_ROUNDS, multiplexed=True)
    finally:
        s.stop()
