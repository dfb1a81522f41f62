"""The storage worker's multi-version map: every key's recent values by version.

A read at version ``v`` sees, for each key, the newest write at or below ``v``.
History is kept for the MVCC window only: :meth:`VersionedMap.compact` folds
everything at or below the oldest readable version into one value per key.
:meth:`VersionedMap.rollback` drops versions that were applied but never
committed (found out at a recovery).
"""

from __future__ import annotations

import bisect

from ..protocol import Mutation, MutationKind

#: One key's history: ``(version, value)`` pairs, oldest first; None is a clear.
History = list[tuple[int, bytes | None]]


class VersionedMap:
    def __init__(self) -> None:
        self._keys: list[bytes] = []  # sorted; every key with a history
        self._history: dict[bytes, History] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def _write(self, key: bytes, version: int, value: bytes | None) -> None:
        history = self._history.get(key)
        if history is None:
            if value is None:
                return  # clearing a key that never existed changes nothing
            self._history[key] = [(version, value)]
            bisect.insort(self._keys, key)
        elif history[-1][0] == version:
            history[-1] = (version, value)  # a later mutation of the same batch
        else:
            history.append((version, value))

    def apply(self, version: int, mutation: Mutation) -> None:
        """Apply one mutation at ``version`` (not below any version already applied)."""
        if mutation.kind == MutationKind.SET:
            self._write(mutation.key, version, mutation.param)
        elif mutation.kind == MutationKind.CLEAR:
            self._write(mutation.key, version, None)
        elif mutation.kind == MutationKind.CLEAR_RANGE:
            lo = bisect.bisect_left(self._keys, mutation.key)
            hi = bisect.bisect_left(self._keys, mutation.param, lo=lo)
            for key in self._keys[lo:hi]:
                self._write(key, version, None)

    @staticmethod
    def _at(history: History, version: int) -> bytes | None:
        i = bisect.bisect_right(history, version, key=lambda item: item[0])
        return history[i - 1][1] if i else None

    def get(self, key: bytes, version: int) -> bytes | None:
        history = self._history.get(key)
        return None if history is None else self._at(history, version)

    def range(
        self, begin: bytes, end: bytes, version: int, limit: int
    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Live pairs in ``[begin, end)`` at ``version``, at most ``limit``, and
        whether more remain."""
        pairs: list[tuple[bytes, bytes]] = []
        lo = bisect.bisect_left(self._keys, begin)
        hi = bisect.bisect_left(self._keys, end, lo=lo)
        for key in self._keys[lo:hi]:
            value = self._at(self._history[key], version)
            if value is None:
                continue
            if len(pairs) == limit:
                return pairs, True
            pairs.append((key, value))
        return pairs, False

    def rollback(self, version: int) -> None:
        """Forget every write above ``version``."""
        dead: list[bytes] = []
        for key, history in self._history.items():
            while history and history[-1][0] > version:
                history.pop()
            if not history:
                dead.append(key)
        self._forget(dead)

    def compact(self, oldest: int) -> None:
        """Keep only what reads at ``oldest`` or later can see."""
        dead: list[bytes] = []
        for key, history in self._history.items():
            i = bisect.bisect_right(history, oldest, key=lambda item: item[0])
            if i > 1:
                del history[: i - 1]  # the newest write at or below oldest stays
            if history and history[0][0] <= oldest and history[0][1] is None:
                del history[0]  # a clear visible at oldest is the same as nothing
            if not history:
                dead.append(key)
        self._forget(dead)

    def _forget(self, keys: list[bytes]) -> None:
        if not keys:
            return
        for key in keys:
            del self._history[key]
        gone = set(keys)
        self._keys = [k for k in self._keys if k not in gone]
