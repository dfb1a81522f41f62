"""``bedrock-cp demo``: the main job, on a real local cluster.

1. starts N node processes in a temporary directory and waits until the
   Director of the first epoch has recovered (built) the transaction system;
2. runs a transaction load (concurrent writers, each write acknowledged only
   once committed);
3. kills -9 the node hosting the leader coordinator and its Director;
4. shows the failover (kill -> the next committed transaction) and the new
   epoch's recovery timeline, phase by phase;
5. reads back every acknowledged transaction and counts what was lost;
6. stops everything. Exit status 0 only if nothing was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..client import Client, ClusterUnavailable, Database, open_database
from ..cluster import LocalCluster
from . import CliError

WRITERS = 8


def run_demo(*, nodes: int, seconds: float, as_json: bool) -> int:
    if not 3 <= nodes <= 9:
        raise CliError(f"--nodes must be between 3 and 9 (a failover needs a quorum), not {nodes}")
    if seconds <= 0:
        raise CliError(f"--seconds must be positive, not {seconds}")
    import uvloop

    return uvloop.run(_demo(nodes, seconds, as_json))


class _Out:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def say(self, text: str) -> None:
        if not self.as_json:
            print(text, flush=True)


async def _wait_running(client: Client, *, newer_than: int, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    """Wait until the leader's Director reports a completed recovery of a newer epoch."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while loop.time() < deadline:
        try:
            st = await client.status(timeout=1.0)
        except ClusterUnavailable as exc:
            last = exc
        else:
            rec = st["recovery"]
            last = rec
            if rec.get("state") == "running" and int(rec.get("epoch") or 0) > newer_than:
                return st
        await asyncio.sleep(0.01)
    raise CliError(f"the cluster did not recover within {timeout:g}s (last: {last})")


async def _demo(nodes: int, seconds: float, as_json: bool) -> int:
    out = _Out(as_json)
    report: dict[str, Any] = {"nodes": nodes}
    with tempfile.TemporaryDirectory(prefix="bedrock-demo-") as tmp:
        cluster = LocalCluster(nodes, directory=Path(tmp))
        out.say(f"bedrock-cp demo: starting {nodes} node processes in {tmp}")
        t0 = time.perf_counter()
        cluster.start()
        client: Client | None = None
        db: Database | None = None
        try:
            await cluster.wait_ready()
            client = await cluster.client()
            st = await _wait_running(client, newer_than=0, timeout=30)
            report["initial_recovery_ms"] = st["recovery"].get("last_duration_ms")
            out.say(
                f"  cluster up: leader node {st['leader']}, epoch {st['recovery']['epoch']} "
                f"recovered in {report['initial_recovery_ms']} ms "
                f"({(time.perf_counter() - t0):.1f} s after start)"
            )
            db = await open_database(str(cluster.cluster_file))
            report.update(await _load_kill_verify(cluster, client, db, st, seconds, out))
        finally:
            if db is not None:
                with contextlib.suppress(Exception):
                    await db.close()
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
            cluster.stop()
    ok = report.get("lost") == 0
    report["ok"] = ok
    if as_json:
        json.dump(report, sys.stdout)
        print()
    else:
        verdict = "OK" if ok else "FAILED"
        print(
            f"{verdict}: {report['acknowledged']} acknowledged transactions, "
            f"{report['verified']} verified, {report['lost']} lost; failover "
            f"{report['failover_ms']} ms, recovery {report['recovery_ms']} ms, "
            f"epochs {report['epochs']}"
        )
    return 0 if ok else 1


async def _load_kill_verify(
    cluster: LocalCluster,
    client: Client,
    db: Database,
    before: dict[str, Any],
    seconds: float,
    out: _Out,
) -> dict[str, Any]:
    acked: dict[bytes, bytes] = {}
    commit_times: list[float] = []
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            key, value = f"demo/{w}/{i:06d}".encode(), f"value {w}.{i}".encode()
            async for tr in db.attempts(timeout=30):
                async with tr:
                    tr.set(key, value)
            acked[key] = value
            commit_times.append(time.perf_counter())
            i += 1

    writers = [asyncio.create_task(writer(w)) for w in range(WRITERS)]
    try:
        await asyncio.sleep(seconds / 2)
        leader = int(before["leader"])
        epoch_before = int(before["recovery"]["epoch"])
        out.say(
            f"  {len(acked)} transactions committed; killing node {leader} "
            f"(leader coordinator and Director of epoch {epoch_before}) with SIGKILL"
        )
        killed_at = time.perf_counter()
        cluster.kill(leader, signal.SIGKILL)
        after = await _wait_running(client, newer_than=epoch_before, timeout=30)
        first_commit = await _first_commit_after(commit_times, killed_at)
        failover_ms = round((first_commit - killed_at) * 1000, 1)
        rec = after["recovery"]
        out.say(
            f"  node {after['leader']} leads; epoch {rec['epoch']} recovered; transactions "
            f"commit again {failover_ms} ms after the kill"
        )
        timeline = rec.get("timeline") or []
        latest = timeline[-1] if timeline else {}
        for phase in latest.get("phases", []):
            out.say(f"    {phase['phase']:<22} {phase['duration_ms']:>8.1f} ms")
        await asyncio.sleep(seconds / 2)
    finally:
        stop.set()
        results = await asyncio.gather(*writers, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        out.say(f"  {len(errors)} writer(s) stopped on an error: {errors[0]}")
    verified = 0
    lost: list[bytes] = []
    keys = sorted(acked)
    async with db.transaction() as tr:
        rows = dict(await tr.get_range(b"demo/", b"demo0", limit=len(keys) + 10))
    for key in keys:
        if rows.get(key) == acked[key]:
            verified += 1
        else:
            lost.append(key)
    out.say(f"  read back {verified} of {len(keys)} acknowledged transactions")
    return {
        "acknowledged": len(keys),
        "verified": verified,
        "lost": len(lost),
        "failover_ms": failover_ms,
        "recovery_ms": latest.get("duration_ms") if latest else None,
        "epochs": [epoch_before, int(rec["epoch"])],
        "timeline": latest,
    }


async def _first_commit_after(commit_times: list[float], t: float) -> float:
    for _ in range(3000):  # bounded: 30 s
        later = [c for c in commit_times if c > t]
        if later:
            return min(later)
        await asyncio.sleep(0.01)
    raise CliError("no transaction committed within 30 s of the kill")
