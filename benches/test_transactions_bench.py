"""Transaction commit latency and throughput on 3 real node processes (fsync on).

The layout is the one the Director of epoch 1 builds (3 logs and 3 storage
replicas, one per node; sequencer, proxy and resolver on the leader). Each
transaction reads a read version, writes one key (64-byte value) and commits:
a commit is acknowledged only once every log fsync'd it.

- latency: 1 client, one transaction at a time;
- blind write latency: 1 client, a bare ``db.transaction()`` (no idempotency
  id) that only writes one key, one at a time: it asks for no read version;
- throughput: 32 concurrent clients (4 databases x 8 tasks), 8 transactions
  each per round; transactions/s in ``extra_info``.

Both also give the CPU per transaction of the leader (which runs the
sequencer, proxies and resolver beside its log and storage), of each
follower and of the client (``cpu_per_transaction``, see :mod:`.cpu`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop

from bedrock_cp.client import Database, open_database
from bedrock_cp.cluster import LocalCluster
from tests.clusters import cluster_recovered, recovered_leader

from .cpu import CpuPerOperation

CLIENTS = 32
DATABASES = 4
PER_CLIENT = 8
LATENCY_ROUNDS = 300
THROUGHPUT_ROUNDS = 10
#: What the cluster runs with (LocalCluster's defaults: what users get).
SETTINGS = {"fsync": True, "auth": "tls", "nodes": 3, "logs": 3, "storage_replicas": 3}


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        yield r


@pytest.fixture(scope="module")
def cluster(runner: asyncio.Runner) -> Iterator[LocalCluster]:
    cluster = LocalCluster(3)
    cluster.start()
    try:
        runner.run(cluster_recovered(cluster))
        yield cluster
    finally:
        cluster.stop()
        cluster.cleanup()


def _cpu_meter(runner: asyncio.Runner, cluster: LocalCluster) -> CpuPerOperation:
    return CpuPerOperation.of(cluster, runner.run(recovered_leader(cluster)))


@pytest.fixture(scope="module")
def databases(runner: asyncio.Runner, cluster: LocalCluster) -> Iterator[list[Database]]:
    dbs: list[Database] = []
    try:

        async def setup() -> None:
            for _ in range(DATABASES):
                dbs.append(await open_database(str(cluster.cluster_file)))

        runner.run(setup())
        yield dbs
    finally:

        async def close() -> None:
            for db in dbs:
                await db.close()

        runner.run(close())


async def _one(db: Database, key: bytes) -> None:
    async for tr in db.attempts():
        async with tr:
            await tr.read_version()
            tr.set(key, b"v" * 64)


def test_transaction_latency_1_client(
    benchmark: Any, runner: asyncio.Runner, cluster: LocalCluster, databases: list[Database]
) -> None:
    db = databases[0]
    counter = iter(range(10**9))

    def one() -> None:
        runner.run(_one(db, f"lat/{next(counter)}".encode()))

    benchmark.group = "transaction latency (1 client, sequential)"
    benchmark.extra_info["settings"] = SETTINGS
    meter = _cpu_meter(runner, cluster)
    meter.pedantic(benchmark, one, rounds=LATENCY_ROUNDS, warmup=10)
    benchmark.extra_info["cpu_per_transaction"] = meter.per_operation(LATENCY_ROUNDS)


def test_blind_write_latency_1_client(
    benchmark: Any, runner: asyncio.Runner, cluster: LocalCluster, databases: list[Database]
) -> None:
    db = databases[0]
    counter = iter(range(10**9))

    async def blind(key: bytes) -> None:
        async with db.transaction() as tr:
            tr.set(key, b"v" * 64)

    def one() -> None:
        runner.run(blind(f"blind/{next(counter)}".encode()))

    benchmark.group = "blind write latency (1 client, sequential, bare transaction)"
    benchmark.extra_info["settings"] = SETTINGS
    meter = _cpu_meter(runner, cluster)
    meter.pedantic(benchmark, one, rounds=LATENCY_ROUNDS, warmup=10)
    benchmark.extra_info["cpu_per_transaction"] = meter.per_operation(LATENCY_ROUNDS)


def test_transaction_throughput_32_clients(
    benchmark: Any, runner: asyncio.Runner, cluster: LocalCluster, databases: list[Database]
) -> None:
    counter = iter(range(10**9))

    async def client(db: Database) -> None:
        for _ in range(PER_CLIENT):
            await _one(db, f"tput/{next(counter)}".encode())

    async def round_() -> None:
        await asyncio.gather(*(client(databases[i % DATABASES]) for i in range(CLIENTS)))

    benchmark.group = f"transaction throughput ({CLIENTS} clients)"
    benchmark.extra_info["settings"] = SETTINGS
    meter = _cpu_meter(runner, cluster)
    meter.pedantic(benchmark, lambda: runner.run(round_()), rounds=THROUGHPUT_ROUNDS, warmup=1)
    assert benchmark.stats is not None
    per_round = CLIENTS * PER_CLIENT
    benchmark.extra_info["cpu_per_transaction"] = meter.per_operation(THROUGHPUT_ROUNDS * per_round)
    benchmark.extra_info["transactions_per_round"] = per_round
    benchmark.extra_info["transactions_per_s"] = round(per_round / benchmark.stats.stats.mean)
