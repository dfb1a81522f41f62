"""A real 3-node PySyncObj cluster on 127.0.0.1, beside ours and etcd.

PySyncObj is a Raft library, not a server: each node here is a process
(``python -m benches.pysyncobj_side NODE RAFT_PORTS CLIENT_PORT JOURNAL``)
holding a replicated dict, with a line-based TCP front end so that clients are
driven exactly like etcd's and ours (one connection per client, to the
leader): ``SET key value`` is answered ``OK`` once the command is committed
and applied (PySyncObj's ``callback``), ``STATUS`` with the node's view as
JSON. PySyncObj runs with its default timers (election timeout 0.4-1.4 s,
appends every 0.1 s, ticks every 0.05 s) and a file journal, which it
writes through mmap and never fsyncs per entry: its writes are not durable
on power loss, unlike etcd's and ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bedrock_cp.cluster import free_ports

VALUE = b'{"kind":"log","address":"127.0.0.1:9000"}'


def pysyncobj_version() -> str:
    from importlib.metadata import version

    return version("pysyncobj")


# -- the node process ------------------------------------------------------------------


def _serve(index: int, raft_ports: list[int], client_port: int, journal: str) -> None:
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

    class Store(SyncObj):  # type: ignore[misc]
        def __init__(self, me: str, partners: list[str], conf: Any) -> None:
            super().__init__(me, partners, conf)
            self.data: dict[bytes, bytes] = {}

        @replicated  # type: ignore[untyped-decorator]
        def set(self, key: bytes, value: bytes) -> bool:
            self.data[key] = value
            return True

    addresses = [f"127.0.0.1:{p}" for p in raft_ports]
    me = addresses[index]
    store = Store(me, [a for a in addresses if a != me], SyncObjConf(journalFile=journal))
    index_of = {a: i for i, a in enumerate(addresses)}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                words = line.split()
                if words[:1] == [b"SET"] and len(words) == 3:
                    done: asyncio.Future[int] = loop.create_future()

                    def answered(result: Any, error: int, done: asyncio.Future[int] = done) -> None:
                        # On PySyncObj's thread: hand the outcome to the loop.
                        loop.call_soon_threadsafe(_resolve, done, error)

                    store.set(words[1], words[2], callback=answered)
                    error = await done
                    writer.write(b"OK\n" if error == FAIL_REASON.SUCCESS else b"ERR %d\n" % error)
                elif words[:1] == [b"STATUS"]:
                    st = store.getStatus()
                    leader = st.get("leader")
                    view = {
                        "leader": index_of.get(str(leader)) if leader is not None else None,
                        "term": st.get("raft_term"),
                        "commit": st.get("commit_idx"),
                        "applied": st.get("last_applied"),
                    }
                    writer.write(json.dumps(view).encode() + b"\n")
                else:
                    writer.write(b"ERR bad request\n")
                await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", client_port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _resolve(done: asyncio.Future[int], error: int) -> None:
    if not done.done():
        done.set_result(error)


# -- the cluster, from the bench -------------------------------------------------------


class Line:
    """One client connection to one node's front end; one request at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._io: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def ask(self, request: bytes) -> bytes:
        if self._io is None or self._io[1].is_closing():
            self._io = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self._io
        writer.write(request + b"\n")
        line = await reader.readline()
        if not line:
            self._io = None
            raise ConnectionError(f"pysyncobj node on {self.port} closed the connection")
        return line.strip()

    async def set(self, key: bytes, value: bytes) -> None:
        answer = await self.ask(b"SET " + key + b" " + value)
        if answer != b"OK":
            raise RuntimeError(f"pysyncobj refused a write: {answer!r}")

    async def close(self) -> None:
        if self._io is not None:
            self._io[1].close()
            with contextlib.suppress(Exception):
                await self._io[1].wait_closed()
            self._io = None


class PysyncobjCluster:
    def __init__(self, directory: Path, n: int = 3) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * n)
        self.raft_ports, self.client_ports = ports[:n], ports[n:]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "pysyncobj_version": pysyncobj_version(),
            "election_timeout_ms": "400-1400 (default)",
            "append_entries_period_ms": 100,
            "auto_tick_period_ms": 50,
            "fsync": "never (mmap journal, not synced per entry)",
            "members": len(self.raft_ports),
        }

    def spawn(self, i: int) -> None:
        log = (self.directory / f"n{i}.log").open("ab")
        self.procs[i] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benches.pysyncobj_side",
                str(i),
                ",".join(map(str, self.raft_ports)),
                str(self.client_ports[i]),
                str(self.directory / f"n{i}.journal"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )

    def start(self) -> None:
        for i in range(len(self.raft_ports)):
            self.spawn(i)

    def signal(self, i: int, sig: int) -> None:
        self.procs[i].send_signal(sig)

    def reap(self, i: int) -> None:
        self.procs[i].wait(timeout=15)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
        for p in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)

    async def views(self) -> dict[int, dict[str, Any]]:
        async def one(i: int) -> dict[str, Any]:
            line = Line(self.client_ports[i])
            try:
                async with asyncio.timeout(0.5):
                    return dict(json.loads(await line.ask(b"STATUS")))
            finally:
                await line.close()

        out: dict[int, dict[str, Any]] = {}
        for i in range(len(self.client_ports)):
            with contextlib.suppress(Exception):
                out[i] = await one(i)
        return out

    async def wait_settled(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Until every node names the same leader and has applied a fresh write."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            views = await self.views()
            leaders = {v["leader"] for v in views.values()}
            if len(views) == len(self.client_ports) and len(leaders) == 1 and None not in leaders:
                leader = leaders.pop()
                line = Line(self.client_ports[leader])
                try:
                    await line.set(b"settle", VALUE)
                finally:
                    await line.close()
                target = (await self.views()).get(leader, {}).get("commit")
                # Followers learn the commit with the next append (every 0.1 s).
                for _ in range(40):
                    views = await self.views()
                    if (
                        target is not None
                        and len(views) == len(self.client_ports)
                        and all((v["applied"] or 0) >= target for v in views.values())
                    ):
                        return int(leader)
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.05)
        raise TimeoutError(f"pysyncobj did not settle within {timeout:g}s")


if __name__ == "__main__":
    _serve(
        int(sys.argv[1]), [int(p) for p in sys.argv[2].split(",")], int(sys.argv[3]), sys.argv[4]
    )
