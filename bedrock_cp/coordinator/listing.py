"""Pages of the directory in id order, without sorting it for each page.

A listing of a large directory goes a page at a time (at most
:data:`~.limits.MAX_SERVICES_PAGE` services each). :class:`DirectoryListing`
holds the ids sorted once, when a page is first asked for, plus every id the
directory took since (noted by the state as it applies: one set insertion,
and nothing at all while no listing exists). A page merges the two from its
cursor and skips ids no longer in the directory, so it holds exactly what the
directory holds at that moment above the cursor, whenever the listing was
built. Once the ids added since outgrow :data:`STALE_FRACTION` of it, the
listing is dropped and the next page sorts again: writes stop paying for a
listing no one reads, and no page merges an unbounded set.

Keeping the ids sorted as every write lands costs each write more (bisects
over strings the cache does not hold: a quarter of the sustained-write rate,
``benches/results/directory-pages-ab.md``), for the sake of listings that
are rare.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import TypeVar

#: The listing is dropped once the ids added since it was built exceed this
#: fraction of it (or a page's worth, whichever is more).
STALE_FRACTION = 8

V = TypeVar("V")


class DirectoryListing:
    """The ids of a directory sorted as of one moment, and those added since."""

    __slots__ = ("added", "ids", "limit")

    def __init__(self, ids: list[str], page: int) -> None:
        #: Sorted, as of when the listing was built (some may be gone since).
        self.ids = ids
        #: Ids the directory took since (some may be gone again, or in ``ids``).
        self.added: set[str] = set()
        #: How many ids ``added`` may hold before the listing is stale.
        self.limit = max(page, len(ids) // STALE_FRACTION)

    def note(self, key: str) -> bool:
        """``key`` entered the directory; False once the listing is stale."""
        self.added.add(key)
        return len(self.added) <= self.limit

    def page(self, directory: Mapping[str, V], after: str, limit: int) -> tuple[list[V], bool]:
        """Up to ``limit`` values of ``directory`` whose ids are above ``after``,
        in id order, and whether more follow."""
        ids, pos = self.ids, bisect_right(self.ids, after)
        extra = sorted(k for k in self.added if k > after)
        e = 0
        out: list[V] = []
        while len(out) <= limit:
            a = ids[pos] if pos < len(ids) else None
            b = extra[e] if e < len(extra) else None
            if a is None and b is None:
                break
            if b is None or (a is not None and a <= b):
                key = a
                pos += 1
                if b is not None and a == b:
                    e += 1
            else:
                key = b
                e += 1
            assert key is not None
            value = directory.get(key)
            if value is not None:
                out.append(value)
        return out[:limit], len(out) > limit
