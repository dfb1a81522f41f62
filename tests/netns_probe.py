"""The client side of the multi-host tests, run inside the client's namespace.

``python -m tests.netns_probe CLUSTER_FILE COMMAND ...`` prints one JSON line:

- ``ready TIMEOUT``: wait for a ready leader followed by every node and a
  completed recovery; the cluster status.
- ``services``: the service directory.
- ``write PREFIX COUNT``: COUNT transactions, each setting ``PREFIX-i``; the
  keys acknowledged.
- ``read KEY...``: which of the keys hold their own name as value, which not.
- ``failover PID``: commit once, SIGKILL ``PID`` (the leader's node: the
  namespaces share the pid space), then commit until one succeeds; the
  interval from the kill to that commit's acknowledgement, in ms.
- ``serve``: one line per command on stdin (``commit``: a transaction, retried
  until it commits), one JSON line per answer on stdout, on one open database
  (the benches time a kill made by their own process up to the answer).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

from bedrock_cp.client import Client, ClusterUnavailable, open_database
from bedrock_cp.client.cluster_file import resolve_cluster


async def ready(cluster: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    client = Client(resolve_cluster(cluster))
    deadline = time.monotonic() + timeout
    last: object = "no answer"
    try:
        while time.monotonic() < deadline:
            try:
                st = await client.status(timeout=1.0)
            except ClusterUnavailable as exc:
                last = exc
            else:
                last = st
                reachable = [n for n in st["nodes"] if n["reachable"] and n["id"] is not None]
                if (
                    st["leader"] is not None
                    and st["leader_state"] == "ready"
                    and len(reachable) == len(st["nodes"])
                    and all(n["leader"] == st["leader"] for n in reachable)
                    and st["recovery"]["state"] == "running"
                ):
                    return st
            await asyncio.sleep(0.05)
    finally:
        await client.close()
    raise SystemExit(f"not ready within {timeout:g}s; last: {last}")


async def services(cluster: str) -> dict[str, Any]:
    client = Client(resolve_cluster(cluster))
    try:
        records = await client.services()
    finally:
        await client.close()
    return {"services": [{"id": r.id, "node": r.node, "address": r.address} for r in records]}


async def write(cluster: str, prefix: str, count: int) -> dict[str, Any]:
    db = await open_database(cluster)
    acked = []
    try:
        for i in range(count):
            key = f"{prefix}-{i}".encode()

            async def put(tr: Any, key: bytes = key) -> None:
                tr.set(key, key)

            await asyncio.wait_for(db.run(put), 30)
            acked.append(key.decode())
    finally:
        await db.close()
    return {"acked": acked}


async def read(cluster: str, keys: list[str]) -> dict[str, Any]:
    db = await open_database(cluster)
    try:

        async def get_all(tr: Any) -> list[bytes | None]:
            return [await tr.get(k.encode()) for k in keys]

        values = await asyncio.wait_for(db.run(get_all), 30)
    finally:
        await db.close()
    present = [k for k, v in zip(keys, values, strict=True) if v == k.encode()]
    return {"present": present, "missing": [k for k in keys if k not in present]}


async def failover(cluster: str, pid: int) -> dict[str, Any]:
    db = await open_database(cluster)
    try:

        async def bump(tr: Any) -> None:
            tr.set(b"failover-probe", str(time.time()).encode())

        await asyncio.wait_for(db.run(bump), 30)
        start = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(db.run(bump), 60)
        elapsed = time.perf_counter() - start
    finally:
        await db.close()
    return {"kill_to_commit_ms": round(elapsed * 1000, 3)}


async def serve(cluster: str) -> dict[str, Any]:
    db = await open_database(cluster)
    loop = asyncio.get_running_loop()
    served = 0
    try:

        async def bump(tr: Any) -> None:
            tr.set(b"failover-probe", str(time.time()).encode())

        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() != "commit":
                raise SystemExit(f"unknown serve command {line.strip()!r}")
            await asyncio.wait_for(db.run(bump), 60)
            served += 1
            print(json.dumps({"ok": True}), flush=True)
    finally:
        await db.close()
    return {"served": served}


async def main(argv: list[str]) -> dict[str, Any]:
    cluster, command, *rest = argv
    if command == "ready":
        return await ready(cluster, float(rest[0]))
    if command == "services":
        return await services(cluster)
    if command == "write":
        return await write(cluster, rest[0], int(rest[1]))
    if command == "read":
        return await read(cluster, rest)
    if command == "failover":
        return await failover(cluster, int(rest[0]))
    if command == "serve":
        return await serve(cluster)
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    import uvloop

    print(json.dumps(uvloop.run(main(sys.argv[1:]))), flush=True)
