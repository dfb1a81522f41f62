"""The history checkers on hand-made histories: each valid shape passes, and
each anomaly it claims to detect turns it red with that anomaly's name."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from .checking import (
    APPEND,
    READ,
    History,
    NodeSample,
    Op,
    Outcome,
    StateSample,
    Watch,
    check_bank,
    check_directory,
    check_list_append,
    check_samples,
    dump,
    load,
    make_op,
)

# -- builders -----------------------------------------------------------------------------


class Ops:
    """Appends ops with consecutive ids; times are given, in seconds."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(
        self,
        f: str,
        args: Any,
        invoke: float,
        complete: float | None,
        outcome: str = "ok",
        value: Any = None,
        process: int = 0,
    ) -> Op:
        op = make_op(len(self.ops), process, f, args, invoke, complete, outcome, value)
        self.ops.append(op)
        return op

    def txn(
        self,
        invoke: float,
        complete: float | None,
        *mops: tuple[str, str, Any],
        outcome: str = "ok",
    ) -> Op:
        """A list-append transaction; reads give what they returned (ignored unless ok)."""
        args = tuple((f, k, None if f == READ else v) for f, k, v in mops)
        value = tuple((f, k, tuple(v) if f == READ else v) for f, k, v in mops)
        return self.add("txn", args, invoke, complete, outcome, value if outcome == "ok" else None)


def la(h: Ops, realtime: bool = True) -> set[str]:
    res = check_list_append(h.ops, realtime=realtime)
    assert res.valid is (not res.anomalies), res
    return res.kinds


# -- history ------------------------------------------------------------------------------


def test_history_records_outcomes_and_pending_ops_are_info(tmp_path: Path) -> None:
    clock = iter(range(100))
    h = History(clock=lambda: float(next(clock)))
    a = h.invoke(1, "register", ("s", "v"))
    b = h.invoke(2, "read", ("s",))
    c = h.invoke(3, "register", ("s", "w"))
    d = h.invoke(4, "deregister", ("s",))
    a.ok(7)
    b.fail("rejected")
    c.info("timed out")
    ops = h.ops()
    assert [o.outcome for o in ops] == [Outcome.OK, Outcome.FAIL, Outcome.INFO, Outcome.INFO]
    assert ops[0].value == 7 and ops[0].complete is not None and ops[0].invoke < ops[0].complete
    assert ops[2].complete is None, "an info op never completed"
    assert ops[3].error == "still pending"
    with pytest.raises(RuntimeError):
        a.ok(8)
    d.ok()
    assert load(dump(h.ops(), tmp_path / "h.jsonl")) == h.ops()


def test_history_is_safe_to_record_from_threads() -> None:
    h = History()

    def work(p: int) -> None:
        for i in range(500):
            h.invoke(p, "txn", (i,)).ok(i)

    threads = [threading.Thread(target=work, args=(p,)) for p in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ops = h.ops()
    assert len(ops) == 4000 and [o.id for o in ops] == list(range(4000))
    assert all(o.ok for o in ops)


def test_dump_and_load_keep_micro_ops_hashable(tmp_path: Path) -> None:
    h = Ops()
    h.txn(0, 1, (APPEND, "x", 1), (READ, "x", [1]))
    h.add("read", ("a",), 2, 3, value={"a": "v"})
    back = load(dump(h.ops, tmp_path / "h.jsonl"))
    assert back == h.ops
    assert check_list_append(back).valid


# -- directory linearizability --------------------------------------------------------------


def test_directory_sequential_history_is_linearizable() -> None:
    h = Ops()
    h.add("register", ("a", "v1"), 0, 1)
    h.add("read", ("a", "b"), 2, 3, value={"a": "v1"})
    h.add("register", ("b", "w1"), 4, 5)
    h.add("deregister", ("a",), 6, 7)
    h.add("read", ("a", "b"), 8, 9, value={"b": "w1"})
    res = check_directory(h.ops)
    assert res.valid, res
    assert res.stats["keys"] == 2


def test_directory_concurrent_writes_may_land_in_either_order() -> None:
    h = Ops()
    h.add("register", ("a", "v1"), 0, 10, process=1)
    h.add("register", ("a", "v2"), 0, 10, process=2)
    h.add("read", ("a",), 1, 2, value={"a": "v2"}, process=3)
    h.add("read", ("a",), 3, 4, value={"a": "v1"}, process=3)
    h.add("read", ("a",), 11, 12, value={"a": "v1"}, process=3)
    assert check_directory(h.ops).valid


def test_directory_stale_read_is_not_linearizable() -> None:
    h = Ops()
    h.add("register", ("a", "v1"), 0, 1)
    h.add("read", ("a",), 2, 3, value={})
    res = check_directory(h.ops)
    assert res.valid is False and res.kinds == {"nonlinearizable"}, res
    assert "'a'" in res.anomalies[0].explanation
    assert "read absent but the value was 'v1'" in res.anomalies[0].explanation


def test_directory_value_changes_after_both_writes_completed() -> None:
    h = Ops()
    h.add("register", ("a", "v1"), 0, 10, process=1)
    h.add("register", ("a", "v2"), 0, 10, process=2)
    h.add("read", ("a",), 11, 12, value={"a": "v1"}, process=3)
    h.add("read", ("a",), 13, 14, value={"a": "v2"}, process=3)
    assert check_directory(h.ops).kinds == {"nonlinearizable"}


def test_directory_timed_out_write_may_apply_later_or_never_but_once() -> None:
    applied_late = Ops()
    applied_late.add("register", ("a", "v1"), 0, None, "info")
    applied_late.add("read", ("a",), 5, 6, value={})
    applied_late.add("read", ("a",), 7, 8, value={"a": "v1"})
    assert check_directory(applied_late.ops).valid

    never = Ops()
    never.add("register", ("a", "v1"), 0, None, "info")
    never.add("read", ("a",), 5, 6, value={})
    assert check_directory(never.ops).valid

    twice = Ops()
    twice.add("register", ("a", "v1"), 0, None, "info")
    twice.add("deregister", ("a",), 1, 2)
    twice.add("read", ("a",), 3, 4, value={"a": "v1"})
    twice.add("deregister", ("a",), 5, 6)
    twice.add("read", ("a",), 7, 8, value={"a": "v1"})
    assert check_directory(twice.ops).kinds == {"nonlinearizable"}


def test_directory_timed_out_deregisters_each_apply_at_most_once() -> None:
    def history(info_deregisters: int) -> Ops:
        h = Ops()
        h.add("register", ("a", "v1"), 0, 1)
        for _ in range(info_deregisters):
            h.add("deregister", ("a",), 2, None, "info")
        h.add("read", ("a",), 3, 4, value={})
        h.add("register", ("a", "v2"), 5, 6)
        h.add("read", ("a",), 7, 8, value={"a": "v2"})
        h.add("read", ("a",), 9, 10, value={})  # a deregister landed late
        return h

    assert check_directory(history(1).ops).kinds == {"nonlinearizable"}, "one cannot land twice"
    assert check_directory(history(2).ops).valid


def test_directory_long_history_is_checked_quickly() -> None:
    h = Ops()
    t = 0.0
    for i in range(6000):
        if i % 3 == 0:
            h.add("register", ("a", f"v{i}"), t, t + 0.5, process=1)
            current: str | None = f"v{i}"
        elif i % 3 == 1:
            h.add("read", ("a",), t + 0.1, t + 0.6, value={"a": current}, process=2)
        else:
            h.add("deregister", ("a",), t, None, "info", process=3)
            current = None
            h.add("read", ("a",), t + 0.1, t + 0.6, value={}, process=2)
        t += 1
    res = check_directory(h.ops)
    assert res.valid, res


def test_directory_failed_write_must_stay_invisible() -> None:
    h = Ops()
    h.add("register", ("a", "v1"), 0, 1, "fail")
    h.add("read", ("a",), 2, 3, value={"a": "v1"})
    assert check_directory(h.ops).kinds == {"nonlinearizable"}


def test_directory_keys_are_checked_apart() -> None:
    h = Ops()
    h.add("register", ("a", "v1"), 0, 1)
    h.add("register", ("b", "w1"), 0, 1)
    h.add("read", ("a", "b"), 2, 3, value={"a": "v1"})  # b lost
    res = check_directory(h.ops)
    assert res.valid is False and len(res.anomalies) == 1
    assert "service 'b'" in res.anomalies[0].explanation


def test_directory_search_too_large_is_undecided_not_valid() -> None:
    h = Ops()
    for i in range(12):
        h.add("register", ("a", f"v{i}"), 0, None, "info", process=i)
    for i in range(12):
        h.add("read", ("a",), 1 + i, 1.5 + i, value={"a": f"v{11 - i}"}, process=99)
    res = check_directory(h.ops, max_states=50)
    assert res.valid is None, res
    assert "too large to check" in res.note
    assert check_directory(h.ops).valid


# -- list-append ------------------------------------------------------------------------------


def test_list_append_serial_and_concurrent_histories_are_valid() -> None:
    h = Ops()
    h.txn(0, 1, (APPEND, "x", 1), (READ, "x", [1]))
    h.txn(2, 3, (READ, "x", [1]), (APPEND, "y", 1))
    h.txn(4, 6, (APPEND, "x", 2), (READ, "y", [1]))
    h.txn(5, 7, (READ, "x", [1, 2]), (APPEND, "y", 2))  # concurrent with the one before
    h.txn(8, 9, (READ, "x", [1, 2]), (READ, "y", [1, 2]))
    assert la(h) == set()


def test_list_append_info_transactions_may_have_committed() -> None:
    h = Ops()
    h.txn(0, None, (APPEND, "x", 1), outcome="info")  # timed out, yet committed
    h.txn(1, None, (APPEND, "x", 2), outcome="info")  # timed out, never committed
    h.txn(3, 4, (READ, "x", [1]))
    h.txn(5, 6, (APPEND, "x", 3), (READ, "x", [1, 3]))
    assert la(h) == set()


def test_list_append_g0_write_cycle() -> None:
    h = Ops()
    h.txn(0, 5, (APPEND, "x", 1), (APPEND, "y", 2))
    h.txn(0, 5, (APPEND, "x", 3), (APPEND, "y", 4))
    h.txn(6, 7, (READ, "x", [1, 3]), (READ, "y", [4, 2]))
    res = check_list_append(h.ops)
    assert res.kinds == {"G0"}, res
    explanation = res.anomalies[0].explanation
    assert "-ww->" in explanation and "#0" in explanation and "#1" in explanation


def test_list_append_g1c_circular_information_flow() -> None:
    h = Ops()
    h.txn(0, 5, (APPEND, "x", 1), (READ, "y", [2]))
    h.txn(0, 5, (APPEND, "y", 2), (READ, "x", [1]))
    assert la(h) == {"G1c"}


def test_list_append_g_single_read_skew() -> None:
    h = Ops()
    h.txn(0, 5, (APPEND, "x", 1), (APPEND, "y", 1))
    h.txn(0, 5, (READ, "x", []), (READ, "y", [1]))
    h.txn(6, 7, (READ, "x", [1]))
    assert la(h) == {"G-single"}


def test_list_append_g2_item_write_skew() -> None:
    h = Ops()
    h.txn(0, 5, (READ, "x", []), (APPEND, "y", 1))
    h.txn(0, 5, (READ, "y", []), (APPEND, "x", 2))
    h.txn(6, 7, (READ, "x", [2]), (READ, "y", [1]))
    assert la(h) == {"G2-item"}
    assert la(h, realtime=False) == {"G2-item"}


def test_list_append_stale_read_breaks_only_strict_serializability() -> None:
    h = Ops()
    h.txn(0, 1, (APPEND, "x", 1))
    h.txn(2, 3, (READ, "x", []))  # began after the append was acknowledged
    h.txn(4, 5, (READ, "x", [1]))
    assert la(h) == {"G-single-realtime", "stale-read"}
    assert la(h, realtime=False) == set()


def test_list_append_cycles_that_need_real_time() -> None:
    read_from_the_future = Ops()
    read_from_the_future.txn(2, 3, (APPEND, "x", 1))
    read_from_the_future.txn(0, 1, (READ, "x", [1]))  # completed before the append began
    assert la(read_from_the_future) == {"G1c-realtime"}
    assert la(read_from_the_future, realtime=False) == set()

    overwritten_by_the_past = Ops()
    overwritten_by_the_past.txn(2, 3, (APPEND, "x", 1))
    overwritten_by_the_past.txn(0, 1, (APPEND, "x", 2))  # ordered after 1, done before it began
    overwritten_by_the_past.txn(4, 5, (READ, "x", [1, 2]))
    assert la(overwritten_by_the_past) == {"G0-realtime"}

    two_anti_dependencies = Ops()
    two_anti_dependencies.txn(4, 5, (READ, "x", []))
    two_anti_dependencies.txn(0, 6, (APPEND, "x", 1), (READ, "y", []))
    two_anti_dependencies.txn(0, 1, (APPEND, "y", 2))
    two_anti_dependencies.txn(7, 8, (READ, "x", [1]), (READ, "y", [2]))
    assert la(two_anti_dependencies) == {"G2-item-realtime"}
    assert la(two_anti_dependencies, realtime=False) == set()


def test_list_append_lost_write() -> None:
    h = Ops()
    h.txn(0, 1, (APPEND, "x", 1))
    h.txn(0, 1, (APPEND, "x", 2))
    h.txn(2, 3, (READ, "x", [2]))  # the final read: 1 is gone
    assert "lost-write" in la(h)


def test_list_append_double_apply_shows_as_duplicate_elements() -> None:
    h = Ops()
    h.txn(0, 3, (APPEND, "x", 1))  # a retry applied it a second time
    h.txn(1, 2, (APPEND, "x", 2))
    h.txn(4, 5, (READ, "x", [1, 2, 1]))
    res = check_list_append(h.ops)
    assert "duplicate-elements" in res.kinds, res
    dup = next(a for a in res.anomalies if a.kind == "duplicate-elements")
    assert [op.id for op in dup.ops] == [2, 0]


def test_list_append_garbage_aborted_and_intermediate_reads() -> None:
    garbage = Ops()
    garbage.txn(0, 1, (READ, "x", [99]))
    assert la(garbage) == {"garbage-read"}

    aborted = Ops()
    aborted.txn(0, 1, (APPEND, "x", 1), outcome="fail")
    aborted.txn(2, 3, (READ, "x", [1]))
    assert la(aborted) == {"aborted-read"}

    intermediate = Ops()
    intermediate.txn(0, 5, (APPEND, "x", 1), (APPEND, "x", 2))
    intermediate.txn(0, 5, (READ, "x", [1]))
    assert "intermediate-read" in la(intermediate)


def test_list_append_internal_inconsistency() -> None:
    h = Ops()
    h.txn(0, 1, (APPEND, "x", 1), (READ, "x", []))
    h.txn(2, 3, (READ, "y", []), (READ, "y", [5]))
    assert la(h) >= {"internal"}
    assert len([a for a in check_list_append(h.ops).anomalies if a.kind == "internal"]) == 2


def test_list_append_incompatible_orders() -> None:
    h = Ops()
    h.txn(0, 1, (APPEND, "x", 1))
    h.txn(0, 1, (APPEND, "x", 2))
    h.txn(2, 3, (READ, "x", [1, 2]))
    h.txn(2, 3, (READ, "x", [2, 1]))
    assert la(h) == {"incompatible-order"}


def test_list_append_refuses_a_workload_that_reuses_values() -> None:
    h = Ops()
    h.txn(0, 1, (APPEND, "x", 1))
    h.txn(2, 3, (APPEND, "x", 1))
    with pytest.raises(ValueError, match="unique"):
        check_list_append(h.ops)


def test_list_append_long_valid_history_is_fast_and_clean() -> None:
    h = Ops()
    lists: dict[str, list[int]] = {"x": [], "y": [], "z": []}
    t = 0.0
    for i in range(3000):
        key = "xyz"[i % 3]
        lists[key].append(i)
        other = "xyz"[(i + 1) % 3]
        h.txn(t, t + 0.5, (READ, other, list(lists[other])), (APPEND, key, i))
        t += 1
    res = check_list_append(h.ops)
    assert res.valid, res


# -- bank ---------------------------------------------------------------------------------------


def test_bank_reads_that_keep_the_total_are_valid() -> None:
    h = Ops()
    h.add("transfer", ("a", "b", 5), 0, 1)
    h.add("balances", None, 2, 3, value={"a": 5, "b": 15})
    h.add("transfer", ("b", "a", 1), 4, None, "info")
    h.add("balances", None, 5, 6, value={"a": 6, "b": 14})
    assert check_bank(h.ops, accounts=["a", "b"], total=20).valid


def test_bank_detects_wrong_total_missing_accounts_and_negative_balances() -> None:
    h = Ops()
    h.add("balances", None, 0, 1, value={"a": 5, "b": 14})
    h.add("balances", None, 2, 3, value={"a": 20})
    h.add("balances", None, 4, 5, value={"a": -1, "b": 21})
    res = check_bank(h.ops, accounts=["a", "b"], total=20)
    assert res.valid is False
    assert res.kinds == {"wrong-total", "wrong-accounts", "negative-balance"}, res
    assert res.stats["bad_reads"] == 3


# -- invariants from status ------------------------------------------------------------------------


def sample(t: float, node: int, **kw: Any) -> NodeSample:
    base: dict[str, Any] = {
        "pid": 100 + node,
        "role": "follower",
        "term": 1,
        "commit_index": 1,
        "applied_index": 1,
        "epoch": 1,
    }
    base.update(kw)
    return NodeSample(time=t, node=node, **base)


def test_invariants_hold_over_a_failover_and_a_restart() -> None:
    samples = [
        sample(0, 1, role="leader", director_epoch=1, rss_bytes=40 << 20),
        sample(0, 2),
        sample(1, 2, role="leader", term=2, commit_index=5, director_epoch=2),
        # node 1 restarted: a new pid; it replays its state machine (epoch lower), commit kept
        sample(2, 1, pid=999, term=2, commit_index=1, applied_index=0, epoch=0, director_epoch=1),
        sample(3, 1, pid=999, term=2, commit_index=6, applied_index=6, epoch=2),
    ]
    res = check_samples(samples, rss_budget=200 << 20)
    assert res.valid, res


def test_invariants_detect_each_violation() -> None:
    cases = {
        "two-leaders": [sample(0, 1, role="leader"), sample(0, 2, role="leader")],
        "term-regressed": [sample(0, 1, term=3), sample(1, 1, pid=5, term=2)],
        "commit-regressed": [sample(0, 1, commit_index=9), sample(1, 1, pid=5, commit_index=3)],
        "applied-regressed": [sample(0, 1, applied_index=9), sample(1, 1, applied_index=3)],
        "epoch-regressed": [sample(0, 1, epoch=4), sample(1, 1, epoch=3)],
        "director-epoch-shared": [sample(0, 1, director_epoch=3), sample(1, 2, director_epoch=3)],
        "rss-over-budget": [sample(0, 1, rss_bytes=300 << 20)],
    }
    for kind, samples in cases.items():
        res = check_samples(samples, rss_budget=200 << 20)
        assert res.valid is False and res.kinds == {kind}, (kind, res)
    same = [StateSample(0, 1, 7, "abc"), StateSample(1, 2, 7, "abc"), StateSample(2, 3, 8, "d")]
    assert check_samples(same).valid
    diverged = check_samples([StateSample(0, 1, 7, "abc"), StateSample(1, 2, 7, "abd")])
    assert diverged.kinds == {"divergent-state"}, diverged
    watch = Watch()
    assert watch.add(sample(0, 1, role="leader")) == []
    assert [a.kind for a in watch.add(sample(0, 2, role="leader"))] == ["two-leaders"]
