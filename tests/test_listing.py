"""Pages of the directory (coordinator.listing) against the directory itself:
whatever was added or removed between two pages, and whenever the listing was
built or dropped, a page holds exactly the directory's ids above its cursor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_cp.coordinator import listing as listing_module
from bedrock_cp.coordinator.listing import DirectoryListing

KEYS = st.text(alphabet="abcd", max_size=3)
# (True, key): add; (False, key): remove; None: read the next page.
STEPS = st.lists(st.one_of(st.none(), st.tuples(st.booleans(), KEYS)), max_size=120)


@pytest.fixture(autouse=True)
def _stale_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing_module, "STALE_FRACTION", 2)


@settings(max_examples=300, deadline=None)
@given(st.sets(KEYS, max_size=30), STEPS, st.integers(1, 4))
def test_every_page_holds_the_directory_above_its_cursor(
    initial: set[str], steps: list[tuple[bool, str] | None], limit: int
) -> None:
    directory = {k: k.upper() for k in initial}
    current: DirectoryListing | None = None
    after = ""
    for step in steps:
        if step is None:
            if current is None:
                current = DirectoryListing(sorted(directory), page=2)
            page, more = current.page(directory, after, limit)
            above = sorted(k for k in directory if k > after)
            assert page == [k.upper() for k in above[:limit]]
            assert more == (len(above) > limit)
            after = "" if not more else above[limit - 1]
            continue
        add, key = step
        if add:
            directory[key] = key.upper()
            if current is not None and not current.note(key):
                current = None  # stale: the next page builds a new one
        else:
            directory.pop(key, None)
