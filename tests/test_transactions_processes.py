"""Transactions end to end on 3 real node processes, on the layout the Director built."""

from __future__ import annotations

import asyncio

import pytest

from bedrock_cp import protocol
from bedrock_cp.client import open_database
from bedrock_cp.client.transaction import Database, TransactionError
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.protocol import MAX_TRANSACTION_SIZE

from .clusters import recovered, running

pytestmark = pytest.mark.slow


async def _database(cluster: LocalCluster) -> Database:
    return await open_database(str(cluster.cluster_file))


async def test_1000_transactions_from_8_clients_all_readable_and_a_counter_is_exact() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        try:
            await recovered(client)
        finally:
            await client.close()
        dbs = [await _database(cluster) for _ in range(8)]
        try:
            acked: dict[bytes, bytes] = {}

            async def writer(i: int, db: Database) -> None:
                for j in range(125):
                    key, value = f"k/{i}/{j:04d}".encode(), f"v{i}.{j}".encode()

                    async def put(tr: object, key: bytes = key, value: bytes = value) -> None:
                        tr.set(key, value)  # type: ignore[attr-defined]

                    await db.run(put)
                    acked[key] = value

            await asyncio.gather(*(writer(i, db) for i, db in enumerate(dbs)))
            assert len(acked) == 1000
            async with dbs[0].transaction() as tr:
                rows = dict(await tr.get_range(b"k/", b"k0", limit=2000))
            assert rows == acked

            increments = 10

            async def incrementer(db: Database) -> None:
                for _ in range(increments):
                    async for tr in db.attempts():
                        async with tr:
                            n = int(await tr.get(b"counter") or b"0")
                            tr.set(b"counter", str(n + 1).encode())

            await asyncio.gather(*(incrementer(db) for db in dbs))
            async with dbs[0].transaction() as tr:
                assert await tr.get(b"counter") == str(8 * increments).encode()
        finally:
            for db in dbs:
                await db.close()


async def test_bad_input_gets_clear_errors_and_nothing_else_is_affected() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        try:
            await recovered(client)
        finally:
            await client.close()
        db = await _database(cluster)
        layout = await db.current_layout()
        try:
            async with db.transaction() as tr:
                tr.set(b"good", b"1")

            tr = db.transaction()
            with pytest.raises(TransactionError, match="outside the user key space") as err:
                tr.set(b"\xffsystem", b"x")
            assert not err.value.retryable

            tr = db.transaction()
            with pytest.raises(TransactionError, match="size limit"):
                for i in range(MAX_TRANSACTION_SIZE // 90_000 + 2):
                    tr.set(f"big{i}".encode(), b"x" * 90_000)

            # The proxy checks too: a raw commit with a system key is refused by it.
            proxy = layout.proxies[0]
            reply = await db.dialer.call(
                proxy,
                protocol.Commit(proxy.id, 0, [], [], [protocol.Mutation(0, b"\xffx", b"y")]),
                5.0,
            )
            assert isinstance(reply, protocol.Failed) and reply.code == "invalid", reply

            # A read at a version from the future: storage refuses it, clearly.
            storage = layout.storage[0].replicas[0]
            reply = await db.dialer.call(
                storage, protocol.StorageGet(storage.id, b"good", 10**15), 10.0
            )
            assert isinstance(reply, protocol.Failed) and reply.code == "future_version", reply

            async with db.transaction() as tr:
                assert await tr.get(b"good") == b"1"
                tr.set(b"after", b"2")
            async with db.transaction() as tr:
                assert await tr.get(b"after") == b"2"
        finally:
            await db.close()


async def test_cli_kv_put_get_delete() -> None:
    import json
    import subprocess
    import sys

    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        try:
            await recovered(client)
        finally:
            await client.close()

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bedrock_cp",
                    "kv",
                    *args,
                    "--cluster",
                    str(cluster.cluster_file),
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        loop = asyncio.get_running_loop()
        put = await loop.run_in_executor(None, cli, "put", "greeting", "hello")
        assert put.returncode == 0, put.stderr
        assert json.loads(put.stdout)["version"] > 0
        got = await loop.run_in_executor(None, cli, "get", "greeting")
        assert json.loads(got.stdout)["value"] == "hello"
        deleted = await loop.run_in_executor(None, cli, "delete", "greeting")
        assert deleted.returncode == 0, deleted.stderr
        got = await loop.run_in_executor(None, cli, "get", "greeting")
        assert json.loads(got.stdout)["value"] is None
        bad = await loop.run_in_executor(None, cli, "put", "\udcff", "x")
        assert bad.returncode != 0
        assert "Traceback" not in bad.stderr
        assert "outside the user key space" in bad.stderr
