"""Demo of the native core alone: an in-process Raft group with real WALs.

It elects a leader, commits writes (fsync on), kills the leader as kill -9
would, measures the failover in ticks and wall time, commits more writes on the
survivors, restarts the killed member from its WAL, and verifies that every
acknowledged write is applied, identically, on every member. Exit 0 only if
nothing was lost. Run with ``bedrock-cp demo --core``; the main demo runs a
real cluster of node processes (:mod:`.demo`).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .._native import native
from ..raft import LocalGroup
from . import CliError


def _say(as_json: bool, text: str) -> None:
    if not as_json:
        print(text, flush=True)


def run_core_demo(*, nodes: int, writes: int, as_json: bool, sync: bool) -> int:
    if nodes < 1 or nodes > 9:
        raise CliError(f"--nodes must be between 1 and 9, not {nodes}")
    if writes < 1:
        raise CliError(f"--writes must be positive, not {writes}")
    with tempfile.TemporaryDirectory(prefix="bedrock-demo-") as tmp:
        return _run(Path(tmp), nodes, writes, as_json, sync)


def _commit(group: LocalGroup, data: bytes) -> int:
    index = group.propose(data)
    group.wait_applied(index)
    return index


def _run(base: Path, nodes: int, writes: int, as_json: bool, sync: bool) -> int:
    report: dict[str, Any] = {
        "nodes": nodes,
        "native_version": native.__version__,
        "build_profile": native.build_profile,
        "fsync": sync,
    }
    _say(as_json, f"bedrock-cp demo: {nodes} in-process members, WALs in {base}, fsync={sync}")
    group = LocalGroup(nodes, base, sync=sync, election_tick=10, heartbeat_tick=2)
    t0 = time.perf_counter()
    leader = group.wait_for_leader()
    report["first_leader"] = leader
    report["election_ticks"] = group.ticks
    _say(as_json, f"  leader elected: node {leader} (term {group.members[leader].consensus.term})")

    acknowledged: dict[int, bytes] = {}
    lat: list[float] = []
    for i in range(writes):
        data = f"write-{i}".encode()
        s = time.perf_counter()
        acknowledged[_commit(group, data)] = data
        lat.append(time.perf_counter() - s)
    lat.sort()
    report["write_p50_ms"] = round(lat[len(lat) // 2] * 1000, 3)
    _say(as_json, f"  {writes} writes committed; p50 {report['write_p50_ms']} ms per write")

    if nodes >= 3:
        _say(as_json, f"  killing the leader (node {leader}) ...")
        ticks_before = group.ticks
        s = time.perf_counter()
        group.crash(leader)
        new_leader = group.wait_for_leader()
        index = _commit(group, b"first-after-failover")
        acknowledged[index] = b"first-after-failover"
        report["failover_ticks"] = group.ticks - ticks_before
        report["failover_wall_ms"] = round((time.perf_counter() - s) * 1000, 3)
        report["new_leader"] = new_leader
        _say(
            as_json,
            f"  new leader: node {new_leader} after {report['failover_ticks']} ticks "
            f"(peer_unreachable triggers an immediate pre-vote)",
        )
        for i in range(writes):
            data = f"after-{i}".encode()
            acknowledged[_commit(group, data)] = data
        _say(as_json, f"  {writes} more writes committed on the survivors")
        group.restart(leader)
        last = max(acknowledged)
        group.wait_applied(last)
        _say(as_json, f"  node {leader} restarted from its WAL and caught up to index {last}")

    lost = []
    for member in group.members.values():
        applied = member.state_machine.applied
        for index, data in acknowledged.items():
            if applied.get(index) != data:
                lost.append({"node": member.id, "index": index})
    report["acknowledged"] = len(acknowledged)
    report["lost"] = len(lost)
    report["elapsed_s"] = round(time.perf_counter() - t0, 3)
    report["ok"] = not lost
    if as_json:
        json.dump(report, sys.stdout)
        print()
    else:
        verdict = "OK" if not lost else "FAILED"
        print(
            f"{verdict}: {len(acknowledged)} acknowledged writes, {len(lost)} lost, "
            f"on all {nodes} members, in {report['elapsed_s']} s"
        )
    return 0 if not lost else 1
