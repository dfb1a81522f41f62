"""Node processes on separate network hosts: one Linux network namespace each.

:class:`NetnsCluster` is a :class:`~bedrock_cp.cluster.LocalCluster` whose
nodes each run in a namespace of their own, joined by a bridge in a hub
namespace, so they reach each other only through addresses on that bridge
(``10.x.y.i``), never through loopback. Each node *listens* on every interface
of its namespace (``0.0.0.0``, on an inner port) and *advertises*
``10.x.y.i:7001``, where a fault proxy in the same namespace forwards to it
with a delay of 1-5 ms per chunk (``tc netem`` is not available here): the
configuration a real multi-host deployment behind NAT or a proxy needs.

Clients run in a namespace of their own too (:meth:`probe`), as a process of
``tests.netns_probe``. Everything the class creates — namespaces, interfaces,
processes — is removed by :meth:`destroy`, also after a failed setup; names
carry the test process's pid so concurrent runs never meet. Needs root and
``ip`` (iproute2).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bedrock_cp.cluster import LocalCluster
from bedrock_cp.node.config import NodeConfig

#: The port every node is advertised at (the proxy's) and the one it binds.
ADVERTISED_PORT = 7001
INNER_PORT = 7101
REPO = Path(__file__).resolve().parent.parent


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


class NetnsCluster(LocalCluster):
    """``n`` nodes, each in its own network namespace (see the module docstring)."""

    def __init__(self, n: int = 3, *, delay: tuple[float, float] = (0.001, 0.005), **kw: Any):
        super().__init__(n, **kw)
        tag = os.getpid() % 100_000
        self.prefix = f"bcp{tag}"
        self.subnet = f"10.{200 + tag % 50}.{tag // 50 % 250}"
        self.delay = delay
        self.hub = f"{self.prefix}-hub"
        self.client_ns = f"{self.prefix}-cl"
        self.namespaces: list[str] = []
        self.proxies: dict[int, subprocess.Popen[bytes]] = {}
        self.addresses = {i: f"{self.host(i)}:{ADVERTISED_PORT}" for i in range(1, n + 1)}

    def host(self, node_id: int) -> str:
        return f"{self.subnet}.{node_id}"

    def ns(self, node_id: int) -> str:
        return f"{self.prefix}-n{node_id}"

    # -- the network ----------------------------------------------------------------

    def create_network(self) -> None:
        self._add_ns(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        members = [(self.ns(i), self.host(i)) for i in self.addresses]
        members.append((self.client_ns, f"{self.subnet}.100"))
        for k, (ns, address) in enumerate(members):
            self._add_ns(ns)
            port = f"p{k}"
            _ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "eth0", "netns", ns)
            _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def _add_ns(self, name: str) -> None:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def in_ns(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    # -- processes --------------------------------------------------------------------

    def node_config(self, node_id: int) -> NodeConfig:
        import msgspec

        cfg = super().node_config(node_id)
        return msgspec.structs.replace(
            cfg, listen=f"0.0.0.0:{INNER_PORT}", advertise=self.addresses[node_id]
        )

    def node_command(self, node_id: int) -> list[str]:
        # `ip netns exec` execs the command: the pid is the node's own.
        return self.in_ns(self.ns(node_id), *super().node_command(node_id))

    def before_spawn(self, node_id: int) -> None:
        """The node's proxy, started once and kept across its restarts."""
        if node_id in self.proxies:
            return
        low, high = self.delay
        argv = [self.python, "-m", "tests.faultproxy", self.addresses[node_id]]
        argv += [f"127.0.0.1:{INNER_PORT}", "--delay", str(low), str(high)]
        with open(self.directory / f"proxy-{node_id}.log", "ab") as log:
            self.proxies[node_id] = subprocess.Popen(
                self.in_ns(self.ns(node_id), *argv),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def probe(self, *args: str, timeout: float = 60.0) -> dict[str, Any]:
        """Run ``python -m tests.netns_probe ARGS`` in the client namespace; its JSON."""
        argv = self.in_ns(
            self.client_ns, self.python, "-m", "tests.netns_probe", str(self.cluster_file), *args
        )
        result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"probe {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return answer

    def serving_probe(self) -> subprocess.Popen[str]:
        """A long-lived ``netns_probe serve`` in the client namespace (pipes open)."""
        argv = self.in_ns(
            self.client_ns, self.python, "-m", "tests.netns_probe", str(self.cluster_file), "serve"
        )
        return subprocess.Popen(
            argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    async def wait_ready(self, timeout: float = 30.0, *, nodes: list[int] | None = None) -> int:  # noqa: ASYNC109
        self._check_alive()
        st = self.probe("ready", str(timeout), timeout=timeout + 30)
        return int(st["leader"])

    def destroy(self) -> None:
        """Stop every process, then remove every namespace (and so every interface)."""
        self.stop()
        for proc in self.proxies.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.proxies.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self.namespaces.clear()

    def dump_logs(self) -> None:
        for node_id in self.addresses:
            path = self.log_path(node_id)
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-20:]
                print(f"--- node {node_id} log tail ---", *tail, sep="\n", file=sys.stderr)
