"""The resolver: read-write conflicts within the window, strict version order."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_cp.dataplane.resolver import Resolver
from bedrock_cp.protocol import (
    MVCC_WINDOW_VERSIONS,
    Failed,
    KeyRange,
    Resolve,
    Resolved,
    ResolveTransaction,
)

from .dataplane_pipeline import done_now, ref

K = KeyRange.single


def resolver(**kw: float) -> Resolver:
    return Resolver(ref("res", "resolver"), 1, 0, KeyRange(b"", b"\xff"), **kw)


def txn(rv: int, reads: list[bytes], writes: list[bytes]) -> ResolveTransaction:
    return ResolveTransaction(rv, [K(k) for k in reads], [K(k) for k in writes])


def resolve(prev: int, version: int, *txns: ResolveTransaction) -> Resolve:
    return Resolve("res", 1, prev, version, list(txns))


async def test_a_conflicting_transaction_is_aborted_and_others_admitted() -> None:
    r = resolver()
    assert await r.handle(resolve(0, 10, txn(0, [], [b"k"]))) == Resolved([True])
    answer = await r.handle(
        resolve(
            10,
            20,
            txn(5, [b"k"], [b"x"]),  # read k at 5, k written at 10: conflict
            txn(10, [b"k"], [b"y"]),  # read k after the write: fine
            txn(5, [b"j"], [b"k"]),  # read something else: fine
            txn(15, [b"k"], []),  # k was written earlier in this batch (at 20 > 15)
        )
    )
    assert answer == Resolved([False, True, True, False])
    # Writes of a refused transaction are not recorded: x is free.
    assert await r.handle(resolve(20, 30, txn(12, [b"x"], []))) == Resolved([True])


async def test_reads_outside_the_range_and_too_old_reads() -> None:
    r = Resolver(ref("res", "resolver"), 1, 100, KeyRange(b"m", b"\xff"))
    assert await r.handle(resolve(100, 110, txn(100, [], [b"a", b"n"]))) == Resolved([True])
    # a is outside this resolver's range; n is not.
    assert await r.handle(
        resolve(110, 120, txn(105, [b"a"], []), txn(105, [b"n"], []))
    ) == Resolved([True, False])
    # Before the epoch's start the resolver has no history: too old.
    assert await r.handle(resolve(120, 130, txn(50, [b"z"], []))) == Resolved([False])
    late = 200 + MVCC_WINDOW_VERSIONS
    assert await r.handle(
        resolve(130, late, txn(150, [b"z"], []), txn(150, [], [b"z"]))
    ) == Resolved([False, True])


async def test_an_early_batch_waits_for_its_predecessor() -> None:
    r = resolver()
    second = asyncio.ensure_future(r.handle(resolve(10, 20, txn(5, [b"k"], []))))
    await asyncio.sleep(0.05)
    assert not second.done()
    assert await r.handle(resolve(0, 10, txn(0, [], [b"k"]))) == Resolved([True])
    assert await second == Resolved([False])  # resolved after 10, so it sees the write
    assert r.last == 20


async def test_a_missing_predecessor_fails_and_a_replay_gets_the_same_answer() -> None:
    r = resolver(order_wait=0.05)
    gap = await r.handle(resolve(10, 20))
    assert isinstance(gap, Failed) and gap.code == "gap"
    first = await r.handle(resolve(0, 10, txn(0, [b"k"], [b"k"])))
    assert await r.handle(resolve(0, 10, txn(0, [b"k"], [b"k"]))) == first
    fork = await r.handle(resolve(5, 10))
    assert isinstance(fork, Failed) and fork.code == "invalid"


# -- against a model --------------------------------------------------------------------

KEYS = [b"a", b"b", b"c", b"d"]
_range = st.one_of(
    st.sampled_from(KEYS).map(K),  # most reads and writes are one key
    st.tuples(st.sampled_from(KEYS), st.sampled_from([*KEYS, b"e"])).map(
        lambda t: KeyRange(t[0], t[1])  # may be empty: no key at all
    ),
)
#: A batch: how far its version is above the last one (at times past the whole
#: window), and each transaction's read version as a distance below the last
#: resolved version, reads and writes.
_batch = st.tuples(
    st.sampled_from([1, 2, 7, MVCC_WINDOW_VERSIONS // 2 + 1]),
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 3, 10, MVCC_WINDOW_VERSIONS]),
            st.lists(_range, max_size=3),
            st.lists(_range, max_size=3),
        ),
        max_size=5,
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_batch, max_size=12))
def test_admissions_agree_with_every_write_admitted_so_far(
    batches: list[tuple[int, list[tuple[int, list[KeyRange], list[KeyRange]]]]],
) -> None:
    """A transaction with reads is admitted iff its read version is in the
    window and no write admitted above it (earlier in its own batch included)
    touches what it read; one without reads always is."""
    r = resolver()
    admitted: list[tuple[int, KeyRange]] = []  # every admitted write, forever
    last = 0
    for step, txns in batches:
        version = last + step
        body = [
            ResolveTransaction(max(0, last - back), reads, writes) for back, reads, writes in txns
        ]
        answer = done_now(r.handle(Resolve("res", 1, last, version, body)))
        floor = max(0, version - MVCC_WINDOW_VERSIONS)
        expected: list[bool] = []
        batch: list[KeyRange] = []
        for t in body:
            reads = [x for x in t.reads if x.begin < x.end]
            ok = not reads or (
                t.read_version >= floor
                and not any(
                    v > t.read_version and w.intersects(x) for v, w in admitted for x in reads
                )
                and not any(w.intersects(x) for w in batch for x in reads)
            )
            expected.append(ok)
            if ok:
                batch += [w for w in t.writes if w.begin < w.end]
        assert answer == Resolved(expected)
        admitted += [(version, w) for w in batch]
        last = version
