"""A real 3-member etcd cluster on 127.0.0.1, driven through its v3 HTTP/JSON gateway.

Used by the cluster benchmarks as the peer. Every member runs ``etcd`` (the
Debian ``etcd-server`` package, 3.4.x) with its own data dir under one
directory and ports from :func:`bedrock_cp.cluster.free_ports`. Requests go
through the gateway on each member's client URL (``POST /v3/kv/put``,
``POST /v3/maintenance/status``) with a small asyncio HTTP/1.1 keep-alive
client: stdlib only, no new dependencies.

etcd refuses an election timeout below 5 x the heartbeat interval, so our
defaults (heartbeat 50 ms, election 200-400 ms) have no legal twin. The closest
is heartbeat 40 ms, election 200 ms: etcd then randomizes each election
timeout over [5, 10) ticks of 40 ms, i.e. 200-360 ms, the same lower bound as
ours. etcd fsyncs its WAL on every commit (there is no switch in 3.4).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bedrock_cp.cluster import free_ports

HEARTBEAT_MS = 40
ELECTION_MS = 200

INSTALL_HINT = (
    "etcd is not installed: the etcd side of the cluster benchmarks needs it. "
    "Install it with `apt-get update && apt-get install -y etcd-server etcd-client` "
    "(`make bench` does this itself)."
)


def etcd_binary() -> str:
    """Path of ``etcd``; raises RuntimeError with the install command if missing."""
    path = shutil.which("etcd")
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    return path


def etcd_version() -> str:
    out = subprocess.run(
        [etcd_binary(), "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("etcd Version:").strip()


class HttpError(Exception):
    """A non-2xx answer from the gateway, or a malformed one."""


class HttpConnection:
    """One HTTP/1.1 keep-alive connection; one request at a time."""

    def __init__(self, endpoint: str) -> None:
        host, _, port = endpoint.rpartition(":")
        self.host = host
        self.port = int(port)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            writer.write(head.encode() + body)
            status, data = await _read_response(reader)
        except BaseException:
            # A request cut short leaves the stream mid-response: never reuse it.
            await self.close()
            raise
        if status != 200:
            raise HttpError(f"HTTP {status}: {data[:200]!r}")
        result: dict[str, Any] = json.loads(data)
        return result

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("connection closed before a response")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpError(f"bad status line {line!r}")
    status = int(parts[1])
    length: int | None = None
    chunked = False
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readline()  # the empty trailer line
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return status, b"".join(chunks)
    if length is None:
        return status, await reader.read()
    return status, await reader.readexactly(length)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def put(conn: HttpConnection, key: bytes, value: bytes) -> int:
    """``PUT key value``; returns the revision of the write (it is committed)."""
    reply = await conn.post("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
    return int(reply["header"]["revision"])


async def status(conn: HttpConnection) -> dict[str, Any]:
    return await conn.post("/v3/maintenance/status", {})


@dataclass
class Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    member_id: str = ""

    @property
    def endpoint(self) -> str:
        return self.client_url.removeprefix("http://")


class EtcdCluster:
    """``n`` etcd members on 127.0.0.1 under ``directory``; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        n: int = 3,
        *,
        heartbeat_ms: int = HEARTBEAT_MS,
        election_ms: int = ELECTION_MS,
    ) -> None:
        self.binary = etcd_binary()
        self.directory = directory
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        ports = free_ports(2 * n)
        self.members = [
            Member(
                name=f"m{i + 1}",
                client_url=f"http://127.0.0.1:{ports[2 * i]}",
                peer_url=f"http://127.0.0.1:{ports[2 * i + 1]}",
                data_dir=directory / f"m{i + 1}.etcd",
                log=directory / f"m{i + 1}.log",
            )
            for i in range(n)
        ]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "etcd_version": etcd_version(),
            "heartbeat_interval_ms": self.heartbeat_ms,
            "election_timeout_ms": self.election_ms,
            "fsync": "always (etcd WAL default)",
            "members": len(self.members),
        }

    def spawn(self, index: int) -> None:
        """Start (or restart, from its data dir) member ``index``."""
        m = self.members[index]
        if m.proc is not None and m.proc.poll() is None:
            raise RuntimeError(f"etcd {m.name} is still running (pid {m.proc.pid})")
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", "bedrock-bench",
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--logger", "zap",
            "--log-level", "warn",
        ]  # fmt: skip
        with open(m.log, "ab") as log:
            m.proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def start(self) -> None:
        for i in range(len(self.members)):
            self.spawn(i)

    def signal(self, index: int, sig: int) -> None:
        proc = self.members[index].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)

    def reap(self, index: int, timeout: float = 15.0) -> None:
        proc = self.members[index].proc
        if proc is not None:
            proc.wait(timeout=timeout)

    def alive(self, index: int) -> bool:
        proc = self.members[index].proc
        return proc is not None and proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every member (resuming stopped ones), then SIGKILL what is left."""
        procs = [m.proc for m in self.members if m.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def log_tails(self, lines: int = 10) -> str:
        out = []
        for m in self.members:
            if m.log.exists():
                tail = m.log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- etcd {m.name} log tail ---\n" + "\n".join(tail))
        return "\n".join(out)

    # -- waiting ----------------------------------------------------------------------

    async def statuses(self, timeout: float = 1.0) -> dict[int, dict[str, Any]]:  # noqa: ASYNC109
        """Status of every running member that answers within ``timeout``."""

        async def one(i: int) -> dict[str, Any]:
            conn = HttpConnection(self.members[i].endpoint)
            try:
                async with asyncio.timeout(timeout):
                    return await status(conn)
            finally:
                await conn.close()

        running = [i for i in range(len(self.members)) if self.alive(i)]
        results = await asyncio.gather(*(one(i) for i in running), return_exceptions=True)
        return {i: r for i, r in zip(running, results, strict=True) if isinstance(r, dict)}

    async def wait_settled(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Wait until every running member follows one leader and has applied a fresh put.

        Returns the leader's member index.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: object = "no answer yet"
        while loop.time() < deadline:
            self._check_alive()
            running = [i for i in range(len(self.members)) if self.alive(i)]
            st = await self.statuses()
            last = st
            leaders = {s.get("leader") for s in st.values()}
            if len(st) == len(running) and len(leaders) == 1 and leaders != {None}:
                (leader_id,) = leaders
                for i, s in st.items():
                    self.members[i].member_id = s["header"]["member_id"]
                by_id = {self.members[i].member_id: i for i in st}
                if leader_id in by_id:
                    leader = by_id[leader_id]
                    conn = HttpConnection(self.members[leader].endpoint)
                    try:
                        async with asyncio.timeout(2.0):
                            await put(conn, b"bench/settle", b"x")
                            target = int((await status(conn))["raftIndex"])
                    except (OSError, TimeoutError, HttpError) as exc:
                        last = exc
                    else:
                        if await self._applied_everywhere(target, loop.time() + 5.0):
                            return leader
                    finally:
                        await conn.close()
            await asyncio.sleep(0.02)
        raise TimeoutError(
            f"etcd not settled within {timeout:g}s; last: {last}\n{self.log_tails()}"
        )

    async def _applied_everywhere(self, index: int, until: float) -> bool:
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            st = await self.statuses()
            running = sum(1 for i in range(len(self.members)) if self.alive(i))
            if len(st) == running and all(
                int(s.get("raftAppliedIndex", s["raftIndex"])) >= index for s in st.values()
            ):
                return True
            await asyncio.sleep(0.01)
        return False

    def _check_alive(self) -> None:
        for m in self.members:
            code = m.proc.poll() if m.proc is not None else None
            if code is not None and code not in (-signal.SIGKILL, -signal.SIGTERM, 0):
                raise RuntimeError(f"etcd {m.name} exited with {code}\n{self.log_tails()}")
