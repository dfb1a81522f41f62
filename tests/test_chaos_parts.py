"""The chaos machinery without a cluster: schedules replay from their seed, every
fault is undone at its end, workloads classify outcomes as the checkers expect."""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import pytest

from bedrock_cp.client import TransactionError
from bedrock_cp.director.phases import RecoveryPhase

from .chaos.nemesis import KINDS, Fault, Nemesis, make_schedule, pause_hook
from .chaos.workloads import (
    Attempted,
    Budget,
    ListAppend,
    decode_list,
    encode_list,
    maybe_applied,
    record,
)
from .checking import APPEND, READ, History, Outcome


def test_a_seed_gives_one_schedule_and_seeds_differ() -> None:
    a, b = make_schedule(7, 60), make_schedule(7, 60)
    assert a == b
    assert make_schedule(8, 60) != a
    short = make_schedule(7, 30)
    assert short[:-1] == a[: len(short) - 1], "a shorter run replays the start of a longer one"
    assert pause_hook(7) == pause_hook(7) and pause_hook(7)[0] in list(RecoveryPhase)


def test_a_schedule_may_keep_to_some_kinds() -> None:
    only = ("kill-leader", "pause-leader")
    assert {f.kind for f in make_schedule(3, 120, only)} == set(only)
    with pytest.raises(ValueError, match="no fault kinds"):
        make_schedule(3, 10, ("meteor",))


def test_schedules_are_bounded_and_use_every_kind() -> None:
    seen = set()
    for seed in range(50):
        schedule = make_schedule(seed, 30)
        assert schedule, "at least one fault"
        for f in schedule:
            assert 0 < f.at < 30 and 0 < f.duration <= 4.0
        ends = [f.at + f.duration for f in schedule]
        assert all(end <= nxt.at for end, nxt in zip(ends, schedule[1:], strict=False)), (
            "one fault at a time"
        )
        seen |= {f.kind for f in schedule}
    assert seen == {k for k, _ in KINDS}


class FakeChaos:
    """Records what a fault did to processes and links, like ChaosCluster."""

    def __init__(self, n: int) -> None:
        self.nodes = list(range(1, n + 1))
        self.down: set[int] = set()
        self.paused: set[int] = set()
        self.held: set[tuple[int, int, str]] = set()
        self.delay = (0.0, 0.0)
        self.drop = 0.0
        self.actions: list[str] = []

    def kill(self, node: int) -> None:
        self.paused.discard(node)
        self.down.add(node)
        self.actions.append(f"kill {node}")

    def restart(self, node: int) -> None:
        self.down.discard(node)

    def pause(self, node: int) -> None:
        self.paused.add(node)
        self.actions.append(f"pause {node}")

    def resume(self, node: int) -> None:
        self.paused.discard(node)

    def cut_off(self, side: set[int]) -> None:
        for a in self.nodes:
            for b in self.nodes:
                if a != b and (a in side) != (b in side):
                    self.held.add((a, b, "both"))
        self.actions.append(f"cut {sorted(side)}")

    def one_way(self, src: int, dst: int) -> None:
        self.held |= {(src, dst, "forward"), (dst, src, "backward")}
        self.actions.append(f"one-way {src}->{dst}")

    def latency(self, low: float, high: float) -> None:
        self.delay = (low, high)
        if high:
            self.actions.append("latency")

    def drops(self, probability: float, seed: int) -> None:
        self.drop = probability
        self.actions.append("drops")

    def heal_network(self) -> None:
        self.held.clear()
        self.delay, self.drop = (0.0, 0.0), 0.0

    def healthy(self) -> bool:
        return not (self.down or self.paused or self.held or self.drop or self.delay[1])


class FakeMonitor:
    def __init__(self, leader: int) -> None:
        self._leader = leader
        self.latest: dict[int, Any] = {}

    def leader(self) -> int | None:
        return self._leader

    def max_epoch(self) -> int:
        return 1

    async def poll_once(self) -> None:
        await asyncio.sleep(0)


@pytest.mark.parametrize("n", [3, 5])
async def test_every_fault_is_undone_and_keeps_a_majority_up(n: int) -> None:
    for kind, _ in KINDS:
        if kind == "kill-recovering":
            continue  # waits for a real Director; covered by the chaos runs
        chaos = FakeChaos(n)
        history = History()
        nemesis = Nemesis(chaos, FakeMonitor(2), history, [])  # type: ignore[arg-type]
        fault = Fault(0.0, kind, 0.01, pick=12345, latency=True)
        task = asyncio.ensure_future(nemesis.apply(fault))
        await asyncio.sleep(0.005)
        assert not chaos.healthy() or kind == "latency", f"{kind} did nothing"
        assert len(chaos.down | chaos.paused) < (n + 1) // 2
        await task
        assert chaos.healthy(), f"{kind} left {chaos.__dict__}"
        assert chaos.actions, kind
        if kind.endswith("-leader"):
            targets = re.findall(r"\d+", chaos.actions[-1])
            assert targets[0] == "2" or ("2" in targets and "cut" in chaos.actions[-1]), (
                chaos.actions
            )
        op = history.ops()[0]
        assert op.f == "fault" and op.ok


def test_minority_partitions_never_take_a_majority() -> None:
    for n in (3, 5):
        chaos = FakeChaos(n)
        nemesis = Nemesis(chaos, FakeMonitor(1), History(), [])  # type: ignore[arg-type]
        for pick in range(100):
            side = nemesis._minority(Fault(0, "partition", 1, pick, False), 1)
            assert 1 in side and len(side) <= (n - 1) // 2


def test_commit_outcomes_that_may_have_applied() -> None:
    assert maybe_applied(TransactionError("unavailable", "timed out", retryable=True))
    assert maybe_applied(TransactionError("commit_unknown_result", "?", retryable=False))
    assert maybe_applied(TimeoutError())
    assert not maybe_applied(TransactionError("not_committed", "conflict", retryable=True))
    assert not maybe_applied(TransactionError("epoch_changed", "newer", retryable=True))


def test_record_maps_attempts_to_outcomes() -> None:
    h = History()
    record(h.invoke(1, "txn", ()), Attempted(value=1, committed=True, retried=["commit: x"]), 1)
    record(h.invoke(1, "txn", ()), Attempted(ambiguous="unavailable: timed out"), None)
    record(h.invoke(1, "txn", ()), Attempted(error="not_committed: conflict"), None)
    ok, info, fail = h.ops()
    assert ok.outcome is Outcome.OK and "commit: x" in ok.error
    assert info.outcome is Outcome.INFO and info.complete is None
    assert fail.outcome is Outcome.FAIL


def test_list_append_values_are_unique_and_keys_retire() -> None:
    la = ListAppend(History(), random.Random(1), keys=3, appends_per_key=5)
    values = []
    for _ in range(200):
        for f, name, v in la.generate():
            assert name in la.names
            if f == APPEND:
                values.append(v)
            else:
                assert f == READ and v is None
    assert len(values) == len(set(values))
    assert len(la.names) > 3 and len(la.active) == 3
    assert decode_list(encode_list([3, 1, 2])) == [3, 1, 2] and decode_list(None) == []


def test_budget_bounds_a_client() -> None:
    stop = asyncio.Event()
    budget = Budget(stop, ops=3)
    assert [budget.more() for _ in range(5)] == [True, True, True, False, False]
    budget = Budget(stop)
    stop.set()
    assert not budget.more()
