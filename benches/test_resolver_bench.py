"""The resolver's conflict check, as the transactions under load give it.

Each batch holds 32 transactions, each reading one key (as every transaction
with an idempotency id reads its conflict key) and writing two; every read
version is ``lag`` batches old, so the writes admitted above it are those of
the ``lag`` batches before (at 32 clients that lag is a few batches; it grows
with the commit rate times how long a transaction takes). The resolver is
warmed with ``lag`` batches, untimed; the bench times resolving the next one.
``extra_info`` gives the time per transaction.
"""

from __future__ import annotations

from typing import Any

import pytest

from bedrock_cp.dataplane.resolver import Resolver
from bedrock_cp.protocol import KeyRange, Resolve, ResolveTransaction, WorkerRef
from tests.dataplane_pipeline import done_now

PER_BATCH = 32


def _batch(n: int, read_version: int) -> list[ResolveTransaction]:
    def txn(i: int) -> ResolveTransaction:
        key = b"t/%06d/%02d" % (n, i)
        reads = [KeyRange.single(b"id/" + key)]
        writes = [KeyRange.single(key), KeyRange.single(b"id/" + key)]
        return ResolveTransaction(read_version, reads, writes)

    return [txn(i) for i in range(PER_BATCH)]


@pytest.mark.parametrize("lag", [10, 100])
def test_resolve_one_batch(benchmark: Any, lag: int) -> None:
    benchmark.group = f"resolver: {PER_BATCH} transactions, read versions {lag} batches old"
    benchmark.extra_info["side"] = "ours"
    ref = WorkerRef("res", "resolver", "1", "127.0.0.1:1")

    def setup() -> tuple[tuple[Resolver, Resolve], dict[str, Any]]:
        r = Resolver(ref, 1, 0, KeyRange(b"", b"\xff"))
        for n in range(1, lag + 1):
            done_now(r.handle(Resolve("res", 1, n - 1, n, _batch(n, max(0, n - lag)))))
        return (r, Resolve("res", 1, lag, lag + 1, _batch(lag + 1, 1))), {}

    def resolve(r: Resolver, body: Resolve) -> None:
        done_now(r.handle(body))

    benchmark.pedantic(resolve, setup=setup, rounds=30)
    assert benchmark.stats is not None
    benchmark.extra_info["us_per_transaction"] = round(
        benchmark.stats.stats.median / PER_BATCH * 1e6, 2
    )
