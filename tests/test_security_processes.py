"""Only the cluster can change the cluster: hostile peers and clients against real nodes.

Each refusal is checked the way it matters: the cluster's state — every node's
term, the epoch, the stored layout, the workers on every node — is the same
afterwards, and the cluster still commits. Authentication is on (the
LocalCluster default); the attackers hold no credentials, wrong ones, another
node's certificate, or a plain client's.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
import struct
from pathlib import Path
from typing import Any

import pytest

from bedrock_cp import protocol
from bedrock_cp.auth import tls
from bedrock_cp.client import Client, RequestRejected
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.wire import PROTOCOL_VERSION, Hello, RaftBatch, decode, encode
from bedrock_cp.wire._framing import FrameDecoder

from .clusters import caller, eventually, leader_of, node_caller, recovered, running

pytestmark = pytest.mark.slow


def heartbeat(to: int, sender: int, term: int) -> bytes:
    """A Raft heartbeat as the native core encodes it (version 1, type 7)."""
    head = struct.pack("<BBQQQQQQBQI", 1, 7, to, sender, term, 0, 0, 0, 0, 0, 0)
    return head + struct.pack("<IB", 0, 0)


async def state_of(cluster: LocalCluster, client: Client) -> dict[str, Any]:
    """What an attack must not change: terms, epoch, layout, workers."""
    st = await client.status()
    out: dict[str, Any] = {
        "terms": sorted((n["id"], n["term"]) for n in st["nodes"]),
        "epoch": st["epoch"],
    }
    layouts, workers = set(), {}
    for node_id, address in cluster.addresses.items():
        call = node_caller(cluster, node_id)
        try:
            reply = await call.call(address, protocol.GetLayout(), 2.0)
            assert isinstance(reply, protocol.LayoutReply)
            layouts.add((reply.epoch, reply.layout))
            listed = await call.call(address, protocol.ListWorkers(), 2.0)
            assert isinstance(listed, protocol.Workers)
            workers[node_id] = sorted((w.ref.id, w.state) for w in listed.workers)
        finally:
            await call.close()
    out["layouts"], out["workers"] = layouts, workers
    return out


async def commits(cluster: LocalCluster) -> None:
    from bedrock_cp.client import open_database

    db = await open_database(cluster.client_cluster_file())
    try:
        async for tr in db.attempts(timeout=20):
            async with tr:
                tr.set(b"still", b"serving")
    finally:
        await db.close()


async def send_raw(
    address: str, frames: list[bytes], ctx: ssl.SSLContext | None = None
) -> list[object]:
    """Send ``frames`` on a fresh connection; return what came back until it closed."""
    host, port = address.rsplit(":", 1)
    extra: dict[str, Any] = {"ssl": ctx, "server_hostname": "x"} if ctx else {}
    try:
        reader, writer = await asyncio.open_connection(host, int(port), **extra)
    except (OSError, ssl.SSLError):
        return ["tls refused"]
    for f in frames:
        writer.write(f)
    try:
        data = await asyncio.wait_for(reader.read(), 5.0)
    except (OSError, ssl.SSLError):
        data = b""
    writer.close()
    try:
        return [decode(b) for b in FrameDecoder().feed(data)]
    except Exception:
        return ["undecodable"]


@pytest.mark.parametrize("auth", ["tls", "secret"])
async def test_a_forged_heartbeat_with_a_huge_term_changes_no_term(auth: str) -> None:
    async with running(LocalCluster(3, auth=auth)) as cluster:  # type: ignore[arg-type]
        client = await cluster.client()
        try:
            await recovered(client)
            before = await state_of(cluster, client)
            forged = encode(RaftBatch([heartbeat(1, 2, 2**64 - 1)]))
            plain = encode(Hello(PROTOCOL_VERSION, cluster.cluster, 2, "peer"))
            attacks: list[tuple[bytes, ssl.SSLContext | None]] = [(plain, None)]
            if auth == "tls":
                # Node 3's real certificate, claiming to be node 2.
                creds = cluster.credentials
                ctx = tls.client_context(
                    str(creds.directory / "ca.pem"),
                    str(creds.directory / "node-3.pem"),
                    str(creds.directory / "node-3.key"),
                )
                attacks.append((encode(Hello(PROTOCOL_VERSION, "bedrock", 2, "peer", "tls")), ctx))
            else:
                bad = Hello(PROTOCOL_VERSION, "bedrock", 2, "peer", "secret", "", os.urandom(32))
                attacks.append((encode(bad), None))  # no proof can follow: the secret is unknown
            for target in (1, 3):
                for hello, ctx in attacks:
                    answer = await send_raw(cluster.addresses[target], [hello, forged], ctx)
                    assert not any(type(a).__name__ == "Welcome" for a in answer), answer
            after = await state_of(cluster, client)
            assert after == before
            assert all(term < 2**32 for _, term in after["terms"])
            await commits(cluster)
            for i in (1, 3):
                assert "refused" in cluster.log_path(i).read_text()
        finally:
            await client.close()


async def test_a_client_cannot_make_director_or_admin_requests() -> None:
    async with running(LocalCluster(3)) as cluster:
        admin = await cluster.client()
        app = caller(cluster, "client")
        two = node_caller(cluster, 2)
        try:
            st = await recovered(admin)
            epoch = int(st["recovery"]["epoch"])
            before = await state_of(cluster, admin)
            workers = before["workers"]
            storage = next(w for ws in workers.values() for w, _ in ws if w.startswith("storage"))
            log_id = next(w for ws in workers.values() for w, _ in ws if w.startswith("log"))
            seq = next(w for ws in workers.values() for w, _ in ws if w.startswith("sequencer"))
            target = cluster.addresses[1]
            as_client: list[protocol.Request] = [
                protocol.StoreLayoutRequest(epoch, b"\x93garbage"),
                protocol.CreateWorker("log", "evil", epoch),
                protocol.RemoveWorker(storage, epoch),
                protocol.StopRole(seq, epoch),
                protocol.LogLock(log_id, 2**62),
                protocol.LogPull(log_id, 0),
                protocol.AddCoordinator(9, "127.0.0.1:1"),
                protocol.RemoveCoordinator(3),
                protocol.RegisterNodeRequest("1", target, [], []),
            ]
            for body in as_client:
                for address in cluster.addresses.values():
                    reply = await app.call(address, body, 5.0)
                    assert isinstance(reply, protocol.Unauthorized), (body, reply)
                    assert reply.request == type(body).__name__
                    assert reply.principal == "client 'client'"
            # The admin may change membership, but is no Director either.
            with pytest.raises(RequestRejected, match="StoreLayoutRequest refused for admin"):
                await admin.store_layout(epoch, b"\x93garbage")
            # A node is a peer, but still cannot lock with an epoch never issued,
            # store garbage as the layout, or register another node.
            reply = await two.call(target, protocol.LogLock(log_id, 2**62), 5.0)
            assert isinstance(reply, protocol.Unauthorized) and "was not issued" in reply.reason
            leader, _ = await leader_of(admin)
            bad = protocol.StoreLayoutRequest(epoch, b"\x93garbage")
            reply = await two.call(cluster.addresses[leader], bad, 5.0)
            assert isinstance(reply, protocol.Rejected) and "invalid layout" in reply.reason
            body = protocol.RegisterNodeRequest("1", target, [], [])
            reply = await two.call(cluster.addresses[leader], body, 5.0)
            assert isinstance(reply, protocol.Unauthorized) and "only itself" in reply.reason

            assert await state_of(cluster, admin) == before
            await commits(cluster)
        finally:
            await app.close()
            await two.close()
            await admin.close()


async def test_data_and_credentials_are_private() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        try:
            await recovered(client)
            await commits(cluster)
        finally:
            await client.close()
        roots = [Path(cluster.node_config(i).data_dir) for i in cluster.addresses]
        assert sum(_check_private(root) for root in roots) > 10
        for path in cluster.credentials.directory.iterdir():
            if path.suffix != ".pem":
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        # No secret in the logs or the cluster file.
        secret = (cluster.credentials.directory / "secret").read_text().strip()
        token = (cluster.credentials.directory / "admin.token").read_text().strip()
        texts = [cluster.cluster_file.read_text()]
        texts += [cluster.log_path(i).read_text() for i in cluster.addresses]
        assert not any(secret in t or token in t for t in texts)


def _check_private(root: Path) -> int:
    """Assert every directory under ``root`` is 0700 and every file 0600; count them."""
    checked = 0
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        want = 0o700 if path.is_dir() else 0o600
        assert mode == want, f"{path} is {mode:04o}"
        checked += 1
    return checked


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_connection_flood_leaves_the_node_serving_with_bounded_memory() -> None:
    """1,000 connections open and drip bytes at one node; it keeps serving its
    cluster (writes commit through it) and its memory stays within a budget."""
    async with running(LocalCluster(3, auth="secret")) as cluster:
        client = await cluster.client()
        try:
            await recovered(client)
            target = cluster.addresses[1]
            pid = cluster.procs[1].pid
            # The cluster's own connections, and this client's, are up before the flood.
            one = caller(cluster)
            assert isinstance(await one.call(target, protocol.Ping(), 5.0), protocol.PingReply)
            rss_before = _rss(pid)
            host, port = target.rsplit(":", 1)
            stop = asyncio.Event()
            opened = 0

            async def dripper(i: int) -> None:
                nonlocal opened
                try:
                    _, writer = await asyncio.open_connection(host, int(port))
                except OSError:
                    return
                opened += 1
                hello = encode(Hello(PROTOCOL_VERSION, "bedrock", 0, "client", "token", "x"))
                try:
                    for byte in hello * 4:  # never a whole handshake in time
                        if stop.is_set():
                            break
                        writer.write(bytes([byte]))
                        await asyncio.sleep(0.05)
                except (OSError, RuntimeError):  # reset by the node: evicted
                    pass
                finally:
                    writer.close()

            drippers = []
            for i in range(1000):
                drippers.append(asyncio.create_task(dripper(i)))
                if i % 50 == 0:
                    await asyncio.sleep(0)  # let them connect in waves
            # While the flood runs: the node answers its cluster and its clients on
            # their established connections (new ones from the flood's own address
            # compete with it for the handshake slots).
            try:
                for i in range(5):
                    reply = await one.call(target, protocol.Ping(), 5.0)
                    assert isinstance(reply, protocol.PingReply)
                    await client.register(f"flood-{i}", kind="log", address="127.0.0.1:1")
            finally:
                await one.close()
            rss_during = _rss(pid)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*drippers, return_exceptions=True), 30)
            assert opened >= 500, "the flood did not open connections"

            async def ready_again() -> bool:
                st = await client.status(timeout=1.0)
                return all(n["reachable"] for n in st["nodes"])

            await eventually(ready_again, what="every node reachable after the flood")
            fresh = caller(cluster)  # and new connections are accepted again
            try:
                assert isinstance(
                    await fresh.call(target, protocol.Ping(), 5.0), protocol.PingReply
                )
            finally:
                await fresh.close()
            await commits(cluster)
            # A generous budget: 128 handshakes in flight cost a few MiB at most.
            assert max(rss_during, _rss(pid)) - rss_before < 64 * 1024 * 1024
            assert "too many connections in handshake" in cluster.log_path(1).read_text()
        finally:
            await client.close()
