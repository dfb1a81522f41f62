"""One bedrock_cp node: the transport, and the coordinator role on its Raft log.

``node = await Node.start(config)`` runs inside the caller's event loop (a host
application embeds a node this way); ``await node.stop()`` shuts it down
cleanly. Later issues add the Foreman and the Gateway beside the coordinator.

The seams of the deterministic simulation (DESIGN §1) are explicit here: time
is the running loop's clock, randomness comes from ``rng``, the network is any
object with the :class:`~bedrock_cp.coordinator.service.Network` shape (built by
``network_factory``), and the disk is the WAL directory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from .._native import native
from ..coordinator.service import Coordinator
from ..transport import ConnInfo, Transport
from ..wire import Request
from .config import NodeConfig, parse_address

log = logging.getLogger("bedrock_cp.node")


class NodeNetwork(Protocol):
    """What a node needs from its network (the TCP transport, or the simulator's)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def send_raft(self, to: int, data: bytes) -> None: ...

    def set_peers(self, peers: Mapping[int, str]) -> None: ...


@dataclass(frozen=True)
class NetworkCallbacks:
    """How the network delivers what it receives to the node."""

    on_raft: Callable[[int, list[bytes]], None]
    on_peer_lost: Callable[[int], None]
    on_request: Callable[[Request, ConnInfo], Awaitable[msgspec.Raw]]


NetworkFactory = Callable[[NodeConfig, NetworkCallbacks], NodeNetwork]


def tcp_network(config: NodeConfig, callbacks: NetworkCallbacks) -> Transport:
    """The real network: one uvloop/asyncio TCP listener and a link per peer."""
    host, port = parse_address(config.listen, what="listen")
    return Transport(
        node_id=config.id,
        cluster_id=config.cluster,
        listen_host=host,
        listen_port=port,
        peers={k: v for k, v in config.coordinator_map().items() if k != config.id},
        on_raft=callbacks.on_raft,
        on_peer_lost=callbacks.on_peer_lost,
        on_request=callbacks.on_request,
    )


class Node:
    """A running node. Build it with :meth:`start`."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.id = config.id
        self.coordinator: Coordinator | None = None
        self.network: NodeNetwork | None = None
        self._wal: native.Wal | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self.fatal: BaseException | None = None

    @classmethod
    async def start(
        cls,
        config: NodeConfig,
        *,
        rng: random.Random | None = None,
        network_factory: NetworkFactory = tcp_network,
        executor: concurrent.futures.Executor | None = None,
        wall_clock_ms: Callable[[], int] | None = None,
    ) -> Node:
        """Open the WAL, restore the state, start the network and the Raft loop.

        ``executor`` runs blocking disk work (default: a dedicated WAL thread);
        the simulator passes an inline one. ``wall_clock_ms`` stamps registrations.
        """
        rng = rng or random.Random()
        self = cls(config)
        loop = asyncio.get_running_loop()
        wal_dir = Path(config.data_dir) / "raft"
        # Opening reads every segment: keep it off the event loop.
        wal = await loop.run_in_executor(
            executor, lambda: native.Wal.open(wal_dir, config.cluster, config.id, sync=config.fsync)
        )
        self._wal = wal
        try:
            snapshot = wal.recovered_snapshot
            voters = [] if config.join else sorted(config.coordinator_map())
            timers = config.timers
            raft = native.RaftNode(
                config.id,
                voters,
                wal,
                election_tick=timers.election_ticks,
                heartbeat_tick=timers.heartbeat_ticks,
                seed=rng.getrandbits(63),
            )
            callbacks = NetworkCallbacks(self._on_raft, self._on_peer_lost, self._on_request)
            network = network_factory(config, callbacks)
            self.network = network
            coordinator = Coordinator(
                node_id=config.id,
                address=config.listen,
                configured=config.coordinator_map(),
                node=raft,
                wal=wal,
                network=network,
                tick_interval=timers.tick_ms / 1000,
                snapshot=snapshot,
                compact_every=config.snapshot_every,
                executor=executor,
                **({"wall_clock_ms": wall_clock_ms} if wall_clock_ms else {}),
            )
            coordinator.runner.on_fatal = self._on_fatal
            self.coordinator = coordinator
            await network.start()
            coordinator.start()
        except BaseException:
            wal.close()
            raise
        log.info("node %d started on %s (cluster %r)", config.id, config.listen, config.cluster)
        return self

    async def stop(self) -> None:
        """Stop the Raft loop, close every connection and the WAL."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            if self.coordinator is not None:
                await self.coordinator.stop()
            if self.network is not None:
                await self.network.stop()
        finally:
            if self._wal is not None:
                self._wal.close()
            self._stopped.set()
            log.info("node %d stopped", self.id)

    def abort(self) -> None:
        """Stop at once, as kill -9 would: no clean shutdown of anything.

        What the WAL wrote stays (a crash loses only what was never written);
        the simulator uses this to crash nodes.
        """
        self._stopping = True
        if self.coordinator is not None:
            self.coordinator.runner.abort()
        if self._wal is not None:
            self._wal.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # -- network callbacks ----------------------------------------------------------------

    def _on_raft(self, peer: int, messages: list[bytes]) -> None:
        coordinator = self.coordinator
        if coordinator is None or self._stopping:
            return
        runner = coordinator.runner
        for data in messages:
            try:
                runner.step(data)
            except native.MessageDecodeError as exc:
                log.warning("dropped an undecodable raft message from node %d: %s", peer, exc)
            except native.RaftError as exc:
                log.warning("raft refused a message from node %d: %s", peer, exc)

    def _on_peer_lost(self, peer: int) -> None:
        if self.coordinator is not None and not self._stopping:
            self.coordinator.runner.peer_unreachable(peer)

    async def _on_request(self, request: Request, info: ConnInfo) -> msgspec.Raw:
        assert self.coordinator is not None
        return await self.coordinator.handle(request, info)

    def _on_fatal(self, exc: BaseException) -> None:
        self.fatal = exc
        asyncio.get_running_loop().create_task(self.stop())
