"""Transactions under faults on 3 real node processes: never applied twice, never stale.

- A node paused (SIGSTOP) a few milliseconds into each commit: a retry loop that
  takes an unknown outcome for "not committed" applies the transaction twice.
  Each attempt also writes a key naming itself, so the history of attempts and
  their outcomes is read back from the database: exactly one attempt of each
  logical transaction was applied.
- A client that still holds the previous epoch's layout (its leader node was
  paused through the epoch change, so that node's roles outlived the epoch)
  must never read a value older than one acknowledged before its read began,
  and must not loop on ``version_too_old`` against that old layout.
- With 2 of 3 nodes dead, a fresh read is refused: nothing can confirm that the
  surviving sequencer is still the current epoch's.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
from dataclasses import dataclass

import pytest

from bedrock_cp.client import Client, Database, TransactionError, open_database
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.protocol import Layout, StorageState, StorageStatus

from .clusters import eventually, node_caller, recovered, running

pytestmark = pytest.mark.slow

INCREMENTS = 5


async def _database(cluster: LocalCluster) -> Database:
    return await open_database(str(cluster.cluster_file))


async def _full_layout(client: Client, newer_than: int = 0) -> Layout:
    """Wait for a running epoch (newer than ``newer_than``) with a log on every node."""

    async def check() -> Layout | None:
        st = await client.status(timeout=1.0)
        if st["recovery"]["state"] != "running":
            return None
        layout = await client.fetch_layout(timeout=1.0)
        if layout is None or layout.epoch <= newer_than or len(layout.logs) < 3:
            return None
        return layout if layout.epoch == int(st["recovery"]["epoch"]) else None

    return await eventually(check, timeout=40, what="a running epoch with 3 logs")


async def _leader(client: Client) -> int:
    st = await recovered(client)
    return int(st["leader"])


async def test_increments_with_a_node_paused_into_each_commit_are_applied_exactly_once() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        db = await _database(cluster)
        # (increment, attempt, outcome): outcome is "committed@v" or the error code.
        history: list[tuple[int, int, str]] = []
        reported: dict[int, int] = {}
        try:
            await _full_layout(client)
            for i in range(INCREMENTS):
                leader = await _leader(client)
                victim = [n for n in cluster.addresses if n != leader][i % 2]
                committing = asyncio.Event()

                async def increment(i: int = i, committing: asyncio.Event = committing) -> None:
                    attempt = 0
                    async for tr in db.attempts(timeout=60):
                        attempt += 1
                        async with tr:
                            n = int(await tr.get(b"counter") or b"0")
                            tr.set(b"counter", str(n + 1).encode())
                            tr.set(f"applied/{i}/{attempt}".encode(), str(n).encode())
                            committing.set()  # the commit starts when the block exits
                        rv, epoch = tr._read_version, tr._layout and tr._layout.epoch
                        where = f"rv={rv} e{epoch}"
                        if tr.committed_version is not None:
                            history.append(
                                (i, attempt, f"committed@{tr.committed_version} {where}")
                            )
                        elif tr.error is not None:
                            history.append((i, attempt, f"{tr.error.code} {where} {tr.error}"))
                    assert tr.committed_version is not None
                    reported[i] = tr.committed_version

                task = asyncio.create_task(increment())
                await asyncio.wait_for(committing.wait(), 30)
                await asyncio.sleep(random.uniform(0.001, 0.005))  # the fault: 1-5 ms in
                cluster.pause(victim)
                try:
                    await asyncio.wait({task}, timeout=30)
                finally:
                    cluster.resume(victim)
                await asyncio.wait_for(task, 60)
                await _full_layout(client)

            assert sorted(reported) == list(range(INCREMENTS)), history
            async for tr in db.attempts(timeout=30):
                async with tr:
                    counter = await tr.get(b"counter")
                    applied = await tr.get_range(b"applied/", b"applied0")
            by_increment: dict[int, list[tuple[int, int]]] = {}
            for key, seen in applied:
                _, i_text, attempt_text = key.decode().split("/")
                by_increment.setdefault(int(i_text), []).append((int(attempt_text), int(seen)))
            twice = {i: a for i, a in by_increment.items() if len(a) != 1}
            assert not twice, f"applied more than once: {twice}; history {history}"
            # Each increment saw the one before it: the applied attempts form one chain.
            assert sorted(a[0][1] for a in by_increment.values()) == list(range(INCREMENTS)), (
                f"{by_increment} {reported} " + "\n".join(map(str, history))
            )
            assert counter == str(INCREMENTS).encode(), "\n".join(map(str, history))
            # No attempt reported as definitely not committed was applied.
            definite = {"not_committed", "unavailable", "epoch_changed", "future_version"}
            for i, [(attempt, _)] in by_increment.items():
                outcome = next(o for (j, a, o) in history if j == i and a == attempt)
                assert outcome.split()[0] not in definite, (i, attempt, outcome, history)
        finally:
            await db.close()
            await client.close()


@dataclass
class _Op:
    start: float
    end: float
    value: int


@dataclass
class _EpochChange:
    leader: int  # paused: resume it
    old_epoch: int
    new_layout: Layout
    last_old_commit: int  # the old epoch's last commit before the pause


async def _pause_the_leader_through_an_epoch_change(
    cluster: LocalCluster, client: Client, db: Database
) -> _EpochChange:
    """``db`` commits (so it holds the current layout); then the leader node (the
    Director's, hosting the epoch's roles) is paused until a newer epoch is live.
    The caller resumes it."""
    st = await recovered(client)
    epoch, leader = int(st["recovery"]["epoch"]), int(st["leader"])
    async for tr in db.attempts(timeout=20):
        async with tr:
            tr.set(b"register", b"0")
    assert tr.committed_version is not None
    assert db.layout is not None and db.layout.epoch == epoch
    cluster.pause(leader)
    try:
        await recovered(client, newer_than=epoch, timeout=40)
        layout = await eventually(
            lambda: _layout_newer_than(client, epoch), timeout=20, what="the new layout"
        )
    except BaseException:
        cluster.resume(leader)
        raise
    return _EpochChange(leader, epoch, layout, tr.committed_version)


async def _layout_newer_than(client: Client, epoch: int) -> Layout | None:
    layout = await client.fetch_layout(timeout=1.0)
    return layout if layout is not None and layout.epoch > epoch else None


async def test_an_old_layout_never_reads_older_than_an_acknowledged_commit() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        old_db = await _database(cluster)
        new_db: Database | None = None
        try:
            await _full_layout(client)
            change = await _pause_the_leader_through_an_epoch_change(cluster, client, old_db)
            leader, epoch = change.leader, change.old_epoch
            loop = asyncio.get_running_loop()
            writes: list[_Op] = []
            reads: list[_Op] = []
            new_db = await _database(cluster)

            async def write(value: int) -> None:
                assert new_db is not None
                start = loop.time()
                async for tr in new_db.attempts(timeout=30):
                    async with tr:
                        tr.set(b"register", str(value).encode())
                writes.append(_Op(start, loop.time(), value))

            await write(1)  # acknowledged in the new epoch while the old roles are frozen
            cluster.resume(leader)
            assert old_db.layout is not None and old_db.layout.epoch == epoch

            async def reader() -> None:
                for _ in range(20):
                    start = loop.time()
                    async for tr in old_db.attempts(timeout=30):
                        async with tr:
                            value = int(await tr.get(b"register") or b"-1")
                    reads.append(_Op(start, loop.time(), value))

            async def writer() -> None:
                for value in range(2, 12):
                    await write(value)

            await asyncio.gather(reader(), writer())
            stale = [
                (r, w)
                for r in reads
                for w in writes
                if w.end < r.start and r.value < w.value  # acknowledged before the read began
            ]
            assert not stale, f"{len(stale)} stale reads, e.g. {stale[:3]}"
        finally:
            await old_db.close()
            if new_db is not None:
                await new_db.close()
            await client.close()


async def test_an_old_layout_is_refreshed_instead_of_looping_on_version_too_old() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        old_db = await _database(cluster)
        new_db = await _database(cluster)
        try:
            await _full_layout(client)
            change = await _pause_the_leader_through_an_epoch_change(cluster, client, old_db)
            try:
                # The old sequencer froze at the pause, just after the old client's
                # last commit. Wait (still paused) until storage keeps nothing that
                # old: whatever that sequencer hands out is then too old to read at.
                replica = next(
                    r for r in change.new_layout.storage[0].replicas if r.node != str(change.leader)
                )
                # Everything the old sequencer can hand out is at or below the new
                # epoch's recovery version (an idle cluster's versions stand still).
                frozen_at = change.new_layout.recovery_version
                # Storage status is for cluster nodes only: ask as one.
                peer = node_caller(cluster, int(replica.node))

                async def window_passed() -> bool:
                    answer = await peer.call(replica, StorageStatus(replica.id), 2.0)
                    return isinstance(answer, StorageState) and answer.oldest > frozen_at

                try:
                    await eventually(
                        window_passed, timeout=30, what="the MVCC window past the pause"
                    )
                finally:
                    await peer.close()
            finally:
                cluster.resume(change.leader)
            errors: list[str] = []
            async for tr in old_db.attempts(max_attempts=4, timeout=30):
                async with tr:
                    await tr.get(b"register")
                if tr.error is not None:
                    errors.append(str(tr.error.code))
            assert tr.committed_version is not None, errors
            assert old_db.layout is not None and old_db.layout.epoch > change.old_epoch
            assert errors.count("version_too_old") <= 1, errors
        finally:
            await old_db.close()
            await new_db.close()
            await client.close()


async def test_with_two_of_three_nodes_dead_a_fresh_read_is_refused() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        try:
            await _full_layout(client)
            db = await _database(cluster)
            try:
                async for tr in db.attempts(timeout=20):
                    async with tr:
                        tr.set(b"k", b"acknowledged")
            finally:
                await db.close()
            leader = await _leader(client)
        finally:
            await client.close()
        for node_id in cluster.addresses:
            if node_id != leader:
                cluster.kill(node_id, signal.SIGKILL)

        db = await _database(cluster)
        try:
            with pytest.raises(TransactionError) as refused:
                async with db.transaction() as tr:
                    await tr.get(b"k")
            assert refused.value.retryable, refused.value
        finally:
            await db.close()

        command = [sys.executable, "-m", "bedrock_cp", "kv", "get", "k", "--json", "--timeout", "3"]

        def kv_get() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*command, "--cluster", str(cluster.cluster_file)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        got = await asyncio.get_running_loop().run_in_executor(None, kv_get)
        assert got.returncode != 0, got.stdout
        assert "Traceback" not in got.stderr, got.stderr
        assert not got.stdout.strip() or "value" not in json.loads(got.stdout), got.stdout
