"""The MVCC window above a replica's durable base: what it decides, what it leaves
to the base, range clears, rollback and forgetting what became durable."""

from __future__ import annotations

from bedrock_cp.dataplane.mvcc import VersionedMap
from bedrock_cp.protocol import KeyRange, Mutation, MutationKind

from .dataplane_pipeline import set_


def clear(key: bytes) -> Mutation:
    return Mutation(MutationKind.CLEAR, key)


def clear_range(begin: bytes, end: bytes) -> Mutation:
    return Mutation(MutationKind.CLEAR_RANGE, begin, end)


def test_the_window_decides_only_keys_it_holds_a_version_of() -> None:
    w = VersionedMap()
    w.apply(10, set_(b"a", b"1"))
    w.apply(20, set_(b"a", b"2"))
    w.apply(20, clear(b"b"))  # a key only the base may hold
    assert w.lookup(b"a", 10) == (True, b"1")
    assert w.lookup(b"a", 25) == (True, b"2")
    assert w.lookup(b"a", 5) == (False, None)  # older than the window's first write: the base
    assert w.lookup(b"b", 20) == (True, None)
    assert w.lookup(b"b", 19) == (False, None)
    assert w.lookup(b"c", 30) == (False, None)


def test_a_range_clear_hides_the_base_and_later_writes_show_again() -> None:
    w = VersionedMap()
    w.apply(10, set_(b"b", b"1"))
    w.apply(20, clear_range(b"a", b"m"))
    w.apply(20, set_(b"c", b"3"))  # after the clear, in the same batch
    w.apply(30, set_(b"d", b"4"))
    assert w.lookup(b"b", 20) == (True, None)  # held: cleared by a tombstone
    assert w.lookup(b"x", 20) == (False, None)  # outside the range
    assert w.lookup(b"e", 20) == (True, None)  # only in the base: hidden by the range
    assert w.lookup(b"e", 19) == (False, None)
    assert w.lookup(b"c", 20) == (True, b"3")
    decided, cleared = w.range(b"", b"z", 25)
    assert decided == [(b"b", None), (b"c", b"3")]
    assert cleared == [KeyRange(b"a", b"m")]
    decided, cleared = w.range(b"c", b"e", 30)
    assert decided == [(b"c", b"3"), (b"d", b"4")] and cleared == [KeyRange(b"c", b"e")]
    assert w.range(b"", b"z", 15) == ([(b"b", b"1")], [])


def test_rollback_and_drop_through() -> None:
    w = VersionedMap()
    w.apply(10, set_(b"a", b"1"))
    w.apply(20, clear_range(b"a", b"z"))
    w.apply(30, set_(b"a", b"3"))
    w.rollback(25)
    assert w.lookup(b"a", 40) == (True, None) and w.clears == 1
    w.rollback(15)
    assert w.lookup(b"a", 40) == (True, b"1") and w.clears == 0
    w.apply(20, set_(b"b", b"2"))
    w.apply(30, clear_range(b"a", b"c"))
    w.drop_through(20)  # the base holds 10 and 20 now
    assert len(w) == 2  # both keys still hold the clear at 30
    assert w.lookup(b"a", 25) == (False, None) and w.lookup(b"b", 25) == (False, None)
    assert w.lookup(b"a", 30) == (True, None)
    w.drop_through(30)
    assert len(w) == 0 and w.clears == 0
