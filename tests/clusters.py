"""Helpers for tests that run real node processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from bedrock_cp.auth import AuthConfig, load_connector
from bedrock_cp.client import Client, ClusterFile
from bedrock_cp.client.client import client_credentials
from bedrock_cp.cluster import LocalCluster, free_ports
from bedrock_cp.node import NodeConfig
from bedrock_cp.protocol import Caller

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline, not one await
    what: str = "condition",
) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while loop.time() < deadline:
        try:
            result = await check()
        except Exception as exc:  # the cluster may be mid-failover
            last = exc
        else:
            if result:
                return result
            last = result
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


async def scrape_metrics(port: int) -> dict[str, float]:
    """One scrape of a node's Prometheus endpoint: every sample by its full name."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.0 200"), head
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def direct_client(cluster: LocalCluster, address: str, **kwargs: Any) -> Client:
    """A client (the cluster's admin) that talks to one coordinator only (no failover)."""
    cf = ClusterFile(cluster=cluster.cluster, coordinators=[address], auth=cluster.client_auth())
    return Client(cf, **kwargs)


def node_caller(cluster: LocalCluster, node_id: int) -> Caller:
    """A protocol caller with node ``node_id``'s credentials (calls as that node)."""
    auth = load_connector(cluster.node_auth(node_id), node=True)
    return Caller(cluster.cluster, auth=auth, node_id=node_id)


def caller(cluster: LocalCluster, name: str = "admin") -> Caller:
    """A protocol caller with client ``name``'s credentials (``admin`` or ``client``)."""
    return Caller(cluster.cluster, auth=client_credentials(cluster.client_cluster_file(name)))


@contextlib.asynccontextmanager
async def running(cluster: LocalCluster) -> AsyncIterator[LocalCluster]:
    """Start ``cluster``, wait for a ready leader; always stop it (logs kept on failure)."""
    cluster.start()
    try:
        await cluster.wait_ready()
        yield cluster
    except BaseException:
        _dump_logs(cluster)
        raise
    finally:
        cluster.stop()
        cluster.cleanup()


def _dump_logs(cluster: LocalCluster) -> None:
    for node_id in cluster.addresses:
        path: Path = cluster.log_path(node_id)
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-15:]
            print(f"--- node {node_id} log tail ---", *tail, sep="\n")


async def leader_of(client: Client) -> tuple[int, int]:
    """(leader id, its pid) as the cluster reports it now."""

    async def check() -> tuple[int, int] | None:
        st = await client.status(timeout=1.0)
        if st["leader"] is None or st["leader_state"] != "ready":
            return None
        pid = next(n["pid"] for n in st["nodes"] if n["id"] == st["leader"])
        return int(st["leader"]), int(pid)

    return await eventually(check, what="a ready leader")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def recovered(
    client: Client,
    *,
    newer_than: int = 0,
    timeout: float = 20.0,  # noqa: ASYNC109 - a polling deadline
) -> dict[str, Any]:
    """Wait until the leader's Director reports a completed recovery of an epoch
    newer than ``newer_than``; return that status."""

    async def check() -> dict[str, Any] | None:
        st = await client.status(timeout=1.0)
        rec = st["recovery"]
        if rec["state"] == "running" and int(rec["epoch"] or 0) > newer_than:
            return st
        return None

    return await eventually(
        check, timeout=timeout, what=f"a recovery newer than epoch {newer_than}"
    )


async def cluster_recovered(cluster: LocalCluster) -> None:
    """Wait until ``cluster`` has a leader whose Director completed a recovery
    (the data plane is up), through a client of its own."""
    await cluster.wait_ready()
    client = await cluster.client()
    try:
        await recovered(client)
    finally:
        await client.close()


async def recovered_leader(cluster: LocalCluster) -> int:
    """Wait for the data plane; the id of the node that leads (its Director's)."""
    await cluster_recovered(cluster)
    client = await cluster.client()
    try:
        leader, _ = await leader_of(client)
    finally:
        await client.close()
    return leader


def single_node(tmp_path: Path) -> NodeConfig:
    """The config of a one-node cluster (log and storage here, no fsync, no
    authentication) for a node started in the test's own process."""
    (address,) = (f"127.0.0.1:{p}" for p in free_ports(1))
    return NodeConfig(
        id=1,
        data_dir=str(tmp_path / "n1"),
        listen=address,
        coordinators={"1": address},
        fsync=False,
        capabilities=["log", "storage"],
        auth=AuthConfig(mode="none"),
    )
