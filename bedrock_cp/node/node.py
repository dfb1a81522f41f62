"""One bedrock_cp node: the transport, the coordinator role, the Foreman, the Gateway.

``node = await Node.start(config)`` runs inside the caller's event loop (a host
application embeds a node this way); ``await node.stop()`` shuts it down
cleanly.

Requests arriving on the node's listener are decoded once, as the union of the
coordinator API, the data-plane API and the Gateway's ``GetLayout`` (their tags
are distinct), and routed: coordinator bodies to the coordinator, ``fm_*``
bodies to the Foreman, ``GetLayout`` to the Gateway's cache, and every other
data-plane body to the worker it names (unknown: ``Failed("no_such_worker")``).

The seams of the deterministic simulation (DESIGN §1) are explicit here: time
is the running loop's clock, randomness comes from ``rng``, the network is any
object with the :class:`~bedrock_cp.coordinator.service.Network` shape (built by
``network_factory``), and the disk is the WAL directory — on the real file
system, or on a :class:`~bedrock_cp_native.MemDisk` that can lose power.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from .._native import native
from ..coordinator import Service, api
from ..coordinator.service import Coordinator
from ..dataplane import StorageWorker
from ..dataplane import api as dp
from ..dataplane.dialer import NetworkDialer
from ..dataplane.types import Layout
from ..foreman import Foreman, RoleFactory, WorkerFactory, registry
from ..gateway import CoordinatorCaller, Gateway, GetLayout, TcpCaller
from ..transport import ConnInfo, Transport
from ..wire import Request
from .config import ConfigError, NodeConfig, parse_address
from .recovery import DirectorHost

log = logging.getLogger("bedrock_cp.node")

#: Everything a node's listener may receive (tags are unique across the three APIs).
NodeRequest = api.ApiRequest | dp.DataRequest | GetLayout
_request_decoder: msgspec.msgpack.Decoder[NodeRequest] = msgspec.msgpack.Decoder(NodeRequest)
_encoder = msgspec.msgpack.Encoder()
_COORDINATOR_BODIES = (
    api.Ping,
    api.NodeStatus,
    api.ListServices,
    api.ListNodes,
    api.WatchLayout,
    api.Register,
    api.Deregister,
    api.RegisterNodeRequest,
    api.AddCoordinator,
    api.RemoveCoordinator,
    api.StoreLayoutRequest,
)
_FOREMAN_BODIES = (
    dp.CreateWorker,
    dp.RemoveWorker,
    dp.ListWorkers,
    dp.StartRole,
    dp.StopRole,
)


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


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


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
        self.foreman: Foreman | None = None
        self.gateway: Gateway | None = None
        self.dialer: NetworkDialer | None = None
        self.recovery: DirectorHost | None = None
        self._consensus: native.Consensus | None = None
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
        worker_factories: Mapping[str, WorkerFactory] | None = None,
        role_factories: Mapping[str, RoleFactory] | None = None,
        gateway_caller: CoordinatorCaller | None = None,
        disk: native.MemDisk | None = None,
    ) -> Node:
        """Open the WAL, restore the state, start the network and the Raft loop,
        boot the Foreman's workers and start the Gateway.

        ``executor`` runs blocking disk work (default: a dedicated WAL thread);
        the simulator passes an inline one. ``wall_clock_ms`` stamps registrations.
        ``worker_factories`` is the registry of worker kinds (default: this build's,
        :mod:`bedrock_cp.foreman.registry`); the node offers the kinds
        ``config.capabilities`` lists (a kind missing from the registry is a
        ConfigError). The Gateway calls coordinators through ``gateway_caller``;
        without one it runs over TCP when the network is TCP, and not at all on
        another network (the simulator has no client connections). ``disk`` puts
        the coordinator's WAL on an in-memory disk (simulation, power-loss tests).
        """
        rng = rng or random.Random()
        self = cls(config)
        loop = asyncio.get_running_loop()
        # Workers reach other workers through the nodes' ports.
        self.dialer = NetworkDialer(config.cluster)
        ctx = registry.WorkerContext(
            cluster_id=config.cluster,
            dialer=self.dialer,
            fsync=config.fsync,
            current_layout=self._current_layout,
        )
        try:
            factories = registry.offered(
                list(config.capabilities),
                registry.worker_factories(ctx) if worker_factories is None else worker_factories,
            )
        except KeyError as exc:
            raise ConfigError(f"node {config.id}: {exc.args[0]}") from None
        if gateway_caller is None and network_factory is tcp_network:
            gateway_caller = TcpCaller(config.cluster)
        wal_dir = Path(config.data_dir) / "raft"
        voters = [] if config.join else sorted(config.coordinator_map())
        timers = config.timers
        seed = rng.getrandbits(63)

        def open_consensus() -> native.Consensus:
            return native.Consensus.open(
                wal_dir,
                config.cluster,
                config.id,
                voters,
                disk=disk,
                sync=config.fsync,
                election_tick=timers.election_ticks,
                heartbeat_tick=timers.heartbeat_ticks,
                seed=seed,
            )

        # Opening scans every segment: keep it off the event loop.
        consensus = await loop.run_in_executor(executor, open_consensus)
        self._consensus = consensus
        try:
            callbacks = NetworkCallbacks(self._on_raft, self._on_peer_lost, self._on_request)
            network = network_factory(config, callbacks)
            self.network = network
            coordinator = Coordinator(
                node_id=config.id,
                address=config.listen,
                configured=config.coordinator_map(),
                consensus=consensus,
                network=network,
                tick_interval=timers.tick_ms / 1000,
                compact_every=config.snapshot_every,
                compact_bytes=config.snapshot_bytes,
                executor=executor,
                wall_clock_ms=wall_clock_ms or _wall_clock_ms,
            )
            coordinator.runner.on_fatal = self._on_fatal
            self.coordinator = coordinator
            node_name = str(config.id)
            foreman = Foreman(
                node_name,
                config.listen,
                Path(config.data_dir),
                factories,
                roles=registry.role_factories(ctx) if role_factories is None else role_factories,
                executor=executor,
            )
            if wall_clock_ms is not None:
                foreman.wall_clock_ms = wall_clock_ms
            self.foreman = foreman
            if gateway_caller is not None:
                self.gateway = Gateway(
                    node_name,
                    config.listen,
                    [a for _, a in sorted(config.coordinator_map().items())],
                    config.cluster,
                    capabilities=foreman.capabilities,
                    services=self._services,
                    on_layout=self._on_layout,
                    rng=random.Random(rng.getrandbits(64)),
                    caller=gateway_caller,
                )
                foreman.on_change = self.gateway.refresh
                # The leader's Director runs here; it needs the gateway's network.
                self.recovery = DirectorHost(coordinator, foreman, self.dialer)
                coordinator.epoch_listener = self.recovery
                coordinator.recovery_status = self.recovery.status_dict
            await network.start()
            coordinator.start()
            await foreman.boot()
            if self.gateway is not None:
                self.gateway.start()
        except BaseException:
            if self.foreman is not None:
                await self.foreman.stop()
            if gateway_caller is not None:
                await gateway_caller.close()
            consensus.close()
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
            if self.recovery is not None:
                await self.recovery.stop()
            if self.gateway is not None:
                await self.gateway.stop()
            if self.foreman is not None:
                await self.foreman.stop()
            if self.coordinator is not None:
                await self.coordinator.stop()
            if self.network is not None:
                await self.network.stop()
            if self.dialer is not None:
                await self.dialer.close()
        finally:
            if self._consensus is not None:
                self._consensus.close()
            self._stopped.set()
            log.info("node %d stopped", self.id)

    def abort(self) -> None:
        """Stop at once, as kill -9 would: no clean shutdown of anything.

        What the WAL wrote stays (a crash loses only what was never written);
        the simulator uses this to crash nodes. A WAL write in flight on the WAL
        thread finishes there, unseen (as a killed process's last write may
        still reach the disk): the WAL's files are released once it is done
        (``closed``), never while it runs.
        """
        self._stopping = True
        if self.gateway is not None:
            self.gateway.abort()
        if self.coordinator is not None:
            self.coordinator.runner.abort()
        if self._consensus is not None:
            self._consensus.close()
        self._stopped.set()

    @property
    def closed(self) -> bool:
        """True once the node's WAL files are released (after stop or abort)."""
        return self._consensus is None or self._consensus.closed

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
                if not runner.step(data, peer):
                    log.debug("dropped a raft message on node %d's connection: forged sender", peer)
            except native.MessageDecodeError as exc:
                log.warning("dropped an undecodable raft message from node %d: %s", peer, exc)
            except native.RaftError as exc:
                log.warning("raft refused a message from node %d: %s", peer, exc)

    def _on_peer_lost(self, peer: int) -> None:
        if self.coordinator is not None and not self._stopping:
            self.coordinator.runner.peer_unreachable(peer)

    async def _on_request(self, request: Request, info: ConnInfo) -> msgspec.Raw:
        try:
            body = _request_decoder.decode(bytes(request.body))
        except msgspec.DecodeError as exc:
            return msgspec.Raw(_encoder.encode(api.Rejected(f"bad request: {exc}")))
        return msgspec.Raw(_encoder.encode(await self.handle(body)))

    async def handle(self, body: NodeRequest) -> api.ApiResponse | dp.DataResponse:
        """Route one decoded request (see the module docstring)."""
        if isinstance(body, _COORDINATOR_BODIES):
            assert self.coordinator is not None
            return await self.coordinator.handle_body(body)
        if isinstance(body, GetLayout):
            if self.gateway is None:
                return api.Unavailable("this node runs no gateway")
            return self.gateway.layout_reply()
        foreman = self.foreman
        if foreman is None or self._stopping:
            return dp.Failed("unavailable", "the node is stopping")
        if isinstance(body, _FOREMAN_BODIES):
            return await foreman.handle(body)
        worker = foreman.route(body.worker)
        if worker is None:
            return dp.Failed("no_such_worker", f"no worker {body.worker!r} on node {self.id}")
        if isinstance(body, dp.Health):
            return dp.Done()
        try:
            return await worker.handle(body)
        except Exception as exc:
            log.exception("worker %s failed on %s", body.worker, type(body).__name__)
            return dp.Failed("internal", f"worker {body.worker!r}: {exc!r}")

    def _current_layout(self) -> Layout | None:
        return self.gateway.current_layout() if self.gateway is not None else None

    def _on_layout(self, layout: Layout) -> None:
        """A new TSL reached this node: storage workers follow its logs and ranges."""
        if self.foreman is None:
            return
        for ref in self.foreman.running_refs():
            worker = self.foreman.get(ref.id)
            if isinstance(worker, StorageWorker):
                worker.set_layout(layout)

    def _services(self) -> list[Service]:
        """What the Gateway registers: every running worker and role of the Foreman."""
        if self.foreman is None:
            return []
        return [Service(r.id, r.kind, r.node, r.address) for r in self.foreman.running_refs()]

    def _on_fatal(self, exc: BaseException) -> None:
        self.fatal = exc
        asyncio.get_running_loop().create_task(self.stop())
