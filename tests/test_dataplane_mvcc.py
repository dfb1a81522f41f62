"""The MVCC window above a replica's durable base: what it decides, what it leaves
to the base, range clears, rollback and forgetting what became durable."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_a_forgotten_key_written_again_is_listed_once() -> None:
    w = VersionedMap()
    for version, key in enumerate([b"a", b"b", b"c", b"d"], start=1):
        w.apply(version, set_(key, key))
    w.drop_through(1)  # "a" is forgotten; the others keep the key list as it is
    assert len(w) == 3 and w.lookup(b"a", 4) == (False, None)
    assert w.range(b"", b"z", 4) == ([(b"b", b"b"), (b"c", b"c"), (b"d", b"d")], [])
    w.apply(5, set_(b"a", b"5"))
    w.apply(6, clear_range(b"a", b"c"))
    assert len(w) == 4 and sorted(set(w._keys)) == w._keys == [b"a", b"b", b"c", b"d"]
    assert w.range(b"", b"z", 5)[0] == [(b"a", b"5"), (b"b", b"b"), (b"c", b"c"), (b"d", b"d")]
    w.drop_through(6)
    assert len(w) == 0 and w.range(b"", b"z", 6) == ([], [])


# -- against a model --------------------------------------------------------------------

KEYS = [b"a", b"b", b"c", b"d"]
#: One step: write ``key`` (a set, a clear, or a range clear up to the next key),
#: go to the next version, roll back ``n`` versions, or drop ``n`` versions to the base.
_step = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), st.binary(max_size=2)),
    st.tuples(st.just("clear"), st.sampled_from(KEYS), st.just(b"")),
    st.tuples(st.just("clear_range"), st.sampled_from(KEYS), st.sampled_from([*KEYS, b"z"])),
    st.tuples(st.just("next"), st.just(b""), st.just(b"")),
    st.tuples(st.sampled_from(["rollback", "drop"]), st.integers(0, 4), st.just(b"")),
)


def _mutation(kind: str, key: bytes, param: bytes) -> Mutation:
    if kind == "set":
        return set_(key, param)
    if kind == "clear":
        return clear(key)
    return clear_range(key, param)


def _model_lookup(
    writes: list[tuple[int, Mutation]], base: int, key: bytes, version: int
) -> tuple[bool, bytes | None]:
    """What the window must say: the last write above the base, at or below
    ``version``, that touches ``key`` decides; with none, the base does."""
    decided: tuple[bool, bytes | None] = (False, None)
    for v, m in writes:
        if v <= base or v > version:
            continue
        if m.kind == MutationKind.CLEAR_RANGE:
            if m.key <= key < m.param:
                decided = (True, None)
        elif m.key == key:
            decided = (True, m.param if m.kind == MutationKind.SET else None)
    return decided


@settings(max_examples=300, deadline=None)
@given(st.lists(_step, max_size=60))
def test_the_window_agrees_with_a_model_through_rollbacks_and_drops(
    steps: list[tuple[str, object, bytes]],
) -> None:
    """Every read at or above the base, after any run of writes, rollbacks (never
    below the base) and drops to the base (never above what was applied), is
    what the writes say; the window forgets exactly what it dropped."""
    w = VersionedMap()
    writes: list[tuple[int, Mutation]] = []  # applied and not rolled back, in order
    version, base = 1, 0
    for kind, arg, param in steps:
        if kind in ("set", "clear", "clear_range"):
            assert isinstance(arg, bytes)
            m = _mutation(kind, arg, param)
            w.apply(version, m)
            writes.append((version, m))
        elif kind == "next":
            version += 1
        else:
            assert isinstance(arg, int)
            to = max(base, version - arg)
            if kind == "rollback":
                w.rollback(to)
                writes = [(v, m) for v, m in writes if v <= to]
                version = to + 1  # the chain goes on above it
            else:
                to = min(to, version)
                w.drop_through(to)
                base = max(base, to)
                version = max(version, base + 1)  # writes come above the base
        for at in range(base, version + 2):
            expected = {key: _model_lookup(writes, base, key, at) for key in KEYS}
            assert {key: w.lookup(key, at) for key in KEYS} == expected, at
            # A range read decides each key as a lookup does.
            decided, cleared = w.range(b"", b"z", at)
            shown = dict(decided)
            for key in KEYS:
                if key in shown:
                    assert expected[key] == (True, shown[key]), (key, at)
                else:
                    hidden = any(r.begin <= key < r.end for r in cleared)
                    assert expected[key] == (hidden, None), (key, at)
        # Nothing at or below the base stays in the window.
        assert all(v > base for h in w._history.values() for v, _ in h)
        assert [k for k in w._keys if k in w._history] == sorted(w._history)
        assert len(set(w._keys)) == len(w._keys) and len(w) == len(w._history)
        # What drop_through walks is every history entry, once, in version order.
        assert list(w._written) == sorted(w._written, key=lambda e: e[0])
        entries = [(v, k) for k, h in w._history.items() for v, _ in h]
        assert sorted(w._written) == sorted(entries)
