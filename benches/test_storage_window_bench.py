"""A storage replica's MVCC window forgetting what its base made durable.

A replica moves committed batches older than the 5 s window into its base
every ``FLUSH_INTERVAL`` (0.1 s) and then drops them from the window
(:meth:`~bedrock_cp.dataplane.mvcc.VersionedMap.drop_through`). The bench
holds the window of a replica taking ``rate`` writes/s of distinct keys (5 s
of them, one write each) and times one such drop: the oldest 0.1 s of
writes. Each round builds its window untimed. ``extra_info`` gives the time
per write dropped: what each write costs each replica for this step (a drop
that visits the whole window visits each write 50 times, whatever the rate).
"""

from __future__ import annotations

from typing import Any

import pytest

from bedrock_cp.dataplane.mvcc import VersionedMap
from bedrock_cp.protocol import Mutation, MutationKind

WINDOW_S = 5
FLUSH_S = 0.1


@pytest.mark.parametrize("rate", [2_500, 20_000])
def test_window_drop_of_one_flush(benchmark: Any, rate: int) -> None:
    held, dropped = int(rate * WINDOW_S), int(rate * FLUSH_S)
    benchmark.group = f"storage window at {rate:,} writes/s: drop {dropped:,} of {held + dropped:,}"
    benchmark.extra_info["side"] = "ours"

    def window() -> tuple[tuple[VersionedMap], dict[str, Any]]:
        w = VersionedMap()
        for version in range(1, held + dropped + 1):
            w.apply(version, Mutation(MutationKind.SET, b"t/%08d" % version, b"v" * 64))
        return (w,), {}

    def drop(w: VersionedMap) -> None:
        w.drop_through(dropped)

    benchmark.pedantic(drop, setup=window, rounds=10)
    assert benchmark.stats is not None
    benchmark.extra_info["us_per_write_dropped"] = round(
        benchmark.stats.stats.median / dropped * 1e6, 2
    )
    benchmark.extra_info.update(rate_per_s=rate, window_s=WINDOW_S, flush_s=FLUSH_S)
