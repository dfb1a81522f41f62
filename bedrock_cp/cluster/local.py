"""A cluster of real node processes on 127.0.0.1.

``async with LocalCluster(n=3) as c:`` writes one config per node into a
directory (a temporary one by default), starts ``python -m bedrock_cp node
--config DIR/<id>.toml`` for each, writes ``DIR/cluster.toml`` and returns once
a leader is ready. The same class backs ``bedrock-cp cluster up``; tests use it
to kill -9, SIGSTOP and restart nodes for real.

Authentication is on: the cluster's credentials (``bedrock-cp certs init``) are
generated into ``DIR/certs`` (0700; keys and secrets 0600), each node's config
names its own, and ``cluster.toml`` names the admin's. ``auth="secret"``
uses the cluster secret and tokens instead of certificates; ``auth="none"``
turns authentication off (the nodes warn loudly).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..auth import AuthConfig
from ..auth.certs import CredentialFiles
from ..auth.certs import init as init_credentials
from ..auth.config import Mode
from ..client import Client, ClusterFile, ClusterUnavailable, NodeEntry, connect
from ..node.config import NodeConfig, Timers, dump_config

# peer_address(from_id, to_id, real_address) -> the address from_id dials for to_id.
PeerAddress = Callable[[int, int, str], str]


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel hands to ``bind(0)`` and outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


#: Ports this process already handed out: a node may not have bound its port yet.
_handed_out: set[int] = set()
_PICK_FLOOR = 10000  # below: well-known and commonly configured services


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that were free on 127.0.0.1 a moment ago.

    The port is bound later by a node process, so it is picked where nobody else
    is handed one meanwhile: outside the kernel's ephemeral range (``bind(0)``,
    outgoing connections) and never twice by this process.
    """
    low, high = ephemeral_port_range()
    candidates = [p for p in range(_PICK_FLOOR, 65536) if not low <= p <= high]
    if not candidates:  # the whole range is ephemeral: nowhere safer to pick
        candidates = list(range(_PICK_FLOOR, 65536))
    rng = random.SystemRandom()
    ports: list[int] = []
    for _ in range(64 * n):
        if len(ports) == n:
            return ports
        port = rng.choice(candidates)
        if port in _handed_out or not _bindable(port):
            continue
        _handed_out.add(port)
        ports.append(port)
    raise RuntimeError(f"no {n} free ports outside the ephemeral range {low}-{high}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalCluster:
    """N node processes; see the module docstring."""

    def __init__(
        self,
        n: int = 3,
        *,
        directory: str | Path | None = None,
        base_port: int | None = None,
        cluster: str = "bedrock",
        timers: Timers | None = None,
        fsync: bool = True,
        log_level: str = "info",
        snapshot_every: int = 10_000,
        capabilities: tuple[str, ...] = ("log", "storage"),
        peer_address: PeerAddress | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        auth: Mode = "tls",
        metrics: bool = False,
    ) -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="bedrock-cluster-")).resolve()
        self.cluster = cluster
        self.auth: Mode = auth
        self.timers = timers or Timers()
        self.fsync = fsync
        self.log_level = log_level
        self.snapshot_every = snapshot_every
        self.capabilities = list(capabilities)
        self.peer_address = peer_address
        self.python = python
        #: Extra environment variables of every node process (test hooks).
        self.env = dict(env or {})
        ports = [base_port + i for i in range(n)] if base_port else free_ports(n)
        self.addresses: dict[int, str] = {i + 1: f"127.0.0.1:{p}" for i, p in enumerate(ports)}
        self.joining: set[int] = set()
        #: Each node's Prometheus port, when ``metrics`` is on.
        self.metrics_ports: dict[int, int] = (
            dict(zip(self.addresses, free_ports(n), strict=True)) if metrics else {}
        )
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    # -- files ------------------------------------------------------------------------

    def config_path(self, node_id: int) -> Path:
        return self.directory / f"{node_id}.toml"

    def log_path(self, node_id: int) -> Path:
        return self.directory / f"{node_id}.log"

    @property
    def cluster_file(self) -> Path:
        return self.directory / "cluster.toml"

    @property
    def credentials(self) -> CredentialFiles:
        """Where the cluster's credentials are (made by :meth:`write_files`)."""
        return CredentialFiles(self.directory / "certs", self.cluster)

    def node_auth(self, node_id: int) -> AuthConfig:
        """The ``[auth]`` of node ``node_id``'s config."""
        if self.auth == "none":
            return AuthConfig(mode="none")
        if self.auth == "secret":
            return self.credentials.node_secret()
        return self.credentials.node_tls(node_id)

    def client_auth(self, name: str = "admin") -> AuthConfig:
        """The ``[auth]`` of client ``name`` (``admin`` or ``client``)."""
        if self.auth == "none":
            return AuthConfig(mode="none")
        if self.auth == "secret":
            return self.credentials.client_secret(name)
        return self.credentials.client_tls(name)

    def client_cluster_file(self, name: str = "admin") -> ClusterFile:
        """A cluster file for client ``name`` (the written one is the admin's)."""
        return ClusterFile(
            cluster=self.cluster,
            coordinators=[a for _, a in sorted(self.addresses.items())],
            auth=self.client_auth(name),
        )

    def node_config(self, node_id: int) -> NodeConfig:
        coordinators = {}
        for other, address in self.addresses.items():
            if other in self.joining and other != node_id:
                continue
            if other != node_id and self.peer_address is not None:
                address = self.peer_address(node_id, other, address)
            coordinators[str(other)] = address
        return NodeConfig(
            id=node_id,
            cluster=self.cluster,
            data_dir=str(self.directory / f"data-{node_id}"),
            listen=self.addresses[node_id],
            coordinators=coordinators,
            join=node_id in self.joining,
            fsync=self.fsync,
            snapshot_every=self.snapshot_every,
            capabilities=self.capabilities,
            timers=self.timers,
            log_level=self.log_level,
            auth=self.node_auth(node_id),
            metrics_listen=(
                f"127.0.0.1:{self.metrics_ports[node_id]}" if node_id in self.metrics_ports else ""
            ),
        )

    def write_files(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        self.write_credentials()
        for node_id in self.addresses:
            self.config_path(node_id).write_text(dump_config(self.node_config(node_id)))
        self.write_cluster_file()

    def write_credentials(self) -> None:
        """Create the credentials of every node (kept if they exist: the CA stays)."""
        if self.auth != "none":
            init_credentials(self.credentials.directory, self.cluster, sorted(self.addresses))

    def write_cluster_file(self) -> None:
        nodes = [
            NodeEntry(
                id=i,
                address=a,
                config=str(self.config_path(i)),
                log=str(self.log_path(i)),
                pid=self.procs[i].pid if i in self.procs else 0,
            )
            for i, a in sorted(self.addresses.items())
        ]
        ClusterFile(
            cluster=self.cluster,
            coordinators=[a for _, a in sorted(self.addresses.items())],
            nodes=nodes,
            auth=self.client_auth(),
        ).write(self.cluster_file)

    # -- processes --------------------------------------------------------------------

    def node_command(self, node_id: int) -> list[str]:
        """The command line of node ``node_id``'s process."""
        # -P: never import a bedrock_cp that happens to sit in the current
        # folder (an unbuilt source checkout) instead of the installed one.
        node = ["node", "--config", str(self.config_path(node_id))]
        return [self.python, "-P", "-m", "bedrock_cp", *node]

    def spawn(self, node_id: int) -> subprocess.Popen[bytes]:
        """Start (or restart) node ``node_id`` from its config file."""
        old = self.procs.get(node_id)
        if old is not None and old.poll() is None:
            raise RuntimeError(f"node {node_id} is still running (pid {old.pid})")
        self.before_spawn(node_id)
        with open(self.log_path(node_id), "ab") as log:
            proc = subprocess.Popen(
                self.node_command(node_id),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env} if self.env else None,
            )
        self.procs[node_id] = proc
        return proc

    def before_spawn(self, node_id: int) -> None:
        """Called before each start of a node (what it needs beside it)."""

    def start(self) -> None:
        """Write every file and start every node (without waiting)."""
        self.write_files()
        for node_id in self.addresses:
            self.spawn(node_id)
        self.write_cluster_file()

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a node; for SIGKILL/SIGTERM also wait until it is gone."""
        proc = self.procs[node_id]
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(timeout=15)

    def pause(self, node_id: int) -> None:
        self.kill(node_id, signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        self.kill(node_id, signal.SIGCONT)

    def restart(self, node_id: int) -> None:
        self.spawn(node_id)
        self.write_cluster_file()

    def alive(self, node_id: int) -> bool:
        proc = self.procs.get(node_id)
        return proc is not None and proc.poll() is None

    def add_node(self, node_id: int | None = None) -> int:
        """Start a new node that joins as a non-voter until added with AddCoordinator."""
        node_id = node_id or max(self.addresses) + 1
        self.addresses[node_id] = f"127.0.0.1:{free_ports(1)[0]}"
        self.joining.add(node_id)
        self.write_credentials()
        self.config_path(node_id).write_text(dump_config(self.node_config(node_id)))
        self.spawn(node_id)
        self.write_cluster_file()
        return node_id

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every node (resuming stopped ones), then SIGKILL what is left."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def cleanup(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- waiting ----------------------------------------------------------------------

    async def client(self, **kwargs: Any) -> Client:
        return await connect(self.cluster_file, **kwargs)

    async def wait_ready(self, timeout: float = 30.0, *, nodes: list[int] | None = None) -> int:  # noqa: ASYNC109
        """Wait until a leader is ready and the listed (default: running) nodes follow it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: object = "no answer yet"
        client = Client(self.client_cluster_file())
        try:
            while loop.time() < deadline:
                self._check_alive()
                try:
                    st = await client.status(timeout=1.0)
                except ClusterUnavailable as exc:
                    last = exc
                else:
                    last = st
                    want = (
                        nodes if nodes is not None else [i for i in self.addresses if self.alive(i)]
                    )
                    by_id = {n["id"]: n for n in st["nodes"] if n["reachable"]}
                    leader = st["leader"]
                    if (
                        leader is not None
                        and st["leader_state"] == "ready"
                        and all(i in by_id and by_id[i]["leader"] == leader for i in want)
                    ):
                        return int(leader)
                await asyncio.sleep(0.02)
        finally:
            await client.close()
        raise TimeoutError(f"cluster not ready within {timeout:g}s; last status: {last}")

    def _check_alive(self) -> None:
        for node_id, proc in self.procs.items():
            code = proc.poll()
            if code is not None and code not in (-signal.SIGKILL, -signal.SIGTERM, 0):
                tail = self.log_path(node_id).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"node {node_id} exited with {code}; log tail:\n{tail}")

    async def __aenter__(self) -> LocalCluster:
        self.start()
        try:
            await self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()


def pid_is_node(pid: int) -> bool:
    """True if ``pid`` is a running bedrock_cp node (guards against reused pids)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"bedrock_cp" in cmdline and b"node" in cmdline


def stop_pids(pids: list[int], timeout: float = 10.0) -> list[int]:
    """SIGTERM each node pid, wait, SIGKILL stragglers; return the pids signalled."""
    mine = [p for p in pids if p > 0 and pid_is_node(p)]
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_is_node(p) for p in mine):
        time.sleep(0.05)
    for pid in mine:
        if pid_is_node(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return mine


__all__ = ["LocalCluster", "free_ports", "pid_is_node", "stop_pids"]
