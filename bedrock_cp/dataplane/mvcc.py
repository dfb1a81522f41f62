"""The storage worker's MVCC window: every write above the durable base, by version.

A replica's data is a durable *base* (:mod:`.engine`: the state at its durable
version) plus this window: every write applied above that version, each key's
history in version order, and the range clears, so the base's keys they hide
stay hidden. A read at version ``v`` (not below the base's version) asks the
window first: :meth:`VersionedMap.lookup` says what the key is at ``v`` if the
window decides it, or that the base does. A clear of a range writes a
tombstone for each key the window holds in it and remembers the range for the
keys only the base holds.

Once versions are made durable in the base, :meth:`VersionedMap.drop_through`
forgets them here; :meth:`VersionedMap.rollback` drops versions that were
applied but never committed (found out at a recovery).

Forgetting costs what it forgets, not what the window holds: the window keeps
its writes in the order they were applied, so :meth:`~VersionedMap.drop_through`
visits only the keys written at the versions it drops, and a forgotten key
stays in the sorted key list until forgotten keys are half of it (then the
list is rebuilt once). It used to visit and rebuild the whole window at every
drop (ten a second, so each write was visited 50 times): with 5 s of distinct
keys in the window, ``benches/test_storage_window_bench.py`` measured 10.6-11.5
us per write per replica before, 1.4-2.1 us after (at 2,500 and 20,000
writes/s).
"""

from __future__ import annotations

import bisect
from collections import deque

from ..protocol import KeyRange, Mutation, MutationKind

#: One key's history: ``(version, value)`` pairs, oldest first; None is a clear.
History = list[tuple[int, bytes | None]]


def _version(item: tuple[int, bytes | None]) -> int:
    return item[0]


class VersionedMap:
    def __init__(self) -> None:
        #: Sorted, no duplicates: every key with a history, and ``_gone`` keys
        #: forgotten since the last rebuild (skipped wherever the list is read).
        self._keys: list[bytes] = []
        self._gone = 0
        self._history: dict[bytes, History] = {}
        #: Range clears ``(version, begin, end)``, in version order.
        self._clears: list[tuple[int, bytes, bytes]] = []
        #: ``(version, key)`` of every history entry, in the order applied (so
        #: in version order): each entry of a history has one here.
        self._written: deque[tuple[int, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._history)

    @property
    def clears(self) -> int:
        """How many range clears the window holds."""
        return len(self._clears)

    def _write(self, key: bytes, version: int, value: bytes | None) -> None:
        history = self._history.get(key)
        if history is None:
            self._history[key] = [(version, value)]
            keys = self._keys
            i = bisect.bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                self._gone -= 1  # forgotten, still listed: back
            else:
                keys.insert(i, key)
        elif history[-1][0] == version:
            history[-1] = (version, value)  # a later mutation of the same batch
            return
        else:
            history.append((version, value))
        self._written.append((version, key))

    def apply(self, version: int, mutation: Mutation) -> None:
        """Apply one mutation at ``version`` (not below any version already applied)."""
        if mutation.kind == MutationKind.SET:
            self._write(mutation.key, version, mutation.param)
        elif mutation.kind == MutationKind.CLEAR:
            self._write(mutation.key, version, None)
        elif mutation.kind == MutationKind.CLEAR_RANGE:
            if mutation.key >= mutation.param:
                return
            lo = bisect.bisect_left(self._keys, mutation.key)
            hi = bisect.bisect_left(self._keys, mutation.param, lo=lo)
            for key in self._keys[lo:hi]:
                if key in self._history:
                    self._write(key, version, None)
            self._clears.append((version, mutation.key, mutation.param))

    def lookup(self, key: bytes, version: int) -> tuple[bool, bytes | None]:
        """``(True, value)`` if the window decides ``key`` at ``version`` (None:
        absent), ``(False, None)`` if the base does."""
        history = self._history.get(key)
        if history is not None:
            i = bisect.bisect_right(history, version, key=_version)
            if i:
                return True, history[i - 1][1]
        for v, begin, end in self._clears:
            if v > version:
                break
            if begin <= key < end:
                return True, None
        return False, None

    def range(
        self, begin: bytes, end: bytes, version: int
    ) -> tuple[list[tuple[bytes, bytes | None]], list[KeyRange]]:
        """What the window decides in ``[begin, end)`` at ``version``: the keys it
        holds a version of (with their value, None if absent), in key order, and
        the sub-ranges cleared at or below ``version`` (sorted, disjoint), whose
        other keys the base must not show."""
        decided: list[tuple[bytes, bytes | None]] = []
        lo = bisect.bisect_left(self._keys, begin)
        hi = bisect.bisect_left(self._keys, end, lo=lo)
        for key in self._keys[lo:hi]:
            history = self._history.get(key)
            if history is None:
                continue  # forgotten
            i = bisect.bisect_right(history, version, key=_version)
            if i:
                decided.append((key, history[i - 1][1]))
        cleared: list[KeyRange] = []
        for r in sorted((max(b, begin), min(e, end)) for v, b, e in self._clears if v <= version):
            if r[0] >= r[1]:
                continue
            if cleared and r[0] <= cleared[-1].end:
                if r[1] > cleared[-1].end:
                    cleared[-1] = KeyRange(cleared[-1].begin, r[1])
            else:
                cleared.append(KeyRange(*r))
        return decided, cleared

    def rollback(self, version: int) -> None:
        """Forget every write above ``version``."""
        dead: list[bytes] = []
        for key, history in self._history.items():
            while history and history[-1][0] > version:
                history.pop()
            if not history:
                dead.append(key)
        self._forget(dead)
        while self._clears and self._clears[-1][0] > version:
            self._clears.pop()
        written = self._written
        while written and written[-1][0] > version:
            written.pop()

    def drop_through(self, version: int) -> None:
        """Forget every write at or below ``version`` (the base holds them now)."""
        dead: list[bytes] = []
        written, histories = self._written, self._history
        while written and written[0][0] <= version:
            _, key = written.popleft()
            history = histories.get(key)
            if not history or history[0][0] > version:
                continue  # trimmed already (by an earlier write of the key), or forgotten
            i = bisect.bisect_right(history, version, key=_version)
            del history[:i]
            if not history:
                dead.append(key)
        self._forget(dead)
        i = bisect.bisect_right(self._clears, version, key=lambda c: c[0])
        del self._clears[:i]

    def _forget(self, keys: list[bytes]) -> None:
        if not keys:
            return
        for key in keys:
            del self._history[key]
        self._gone += len(keys)
        if self._gone * 2 > len(self._keys):
            self._keys = [k for k in self._keys if k in self._history]
            self._gone = 0
