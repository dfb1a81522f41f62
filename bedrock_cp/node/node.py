"""One bedrock_cp node: the transport, the coordinator role, the Foreman, the Gateway.

``node = await Node.start(config)`` runs inside the caller's event loop (a host
application embeds a node this way); ``await node.stop()`` shuts it down
cleanly.

Requests arriving on the node's listener are decoded once, as the protocol's
:data:`~bedrock_cp.protocol.Request` union, authorized against the connection's
authenticated principal (:mod:`.authorize`: a refusal is answered before any
handler runs), and routed by type: coordinator
requests to the coordinator, Foreman requests to the Foreman, ``GetLayout`` to
the Gateway's cache, and every worker request to the worker it names (unknown:
``Failed("no_such_worker")``).

The seams of the deterministic simulation are explicit here, all passed to
:meth:`Node.start`: time is ``clock`` (a :class:`~bedrock_cp.clock.Clock`:
Raft ticks, versions, durations, stamps); randomness is ``rng`` (Raft's
election jitter, backoffs, ids) and ``token_bytes`` (unguessable tokens, real
entropy by default); the network is what ``network_factory`` builds (a
:class:`NodeNetwork`: Raft messages, this node's listener, and the
:class:`~bedrock_cp.transport.RpcChannel` every part of the node calls other
nodes through); the disk is ``disk`` (the WALs of the coordinator and of
every worker: the real file system, or a :class:`~bedrock_cp_native.MemDisk`
that can lose power) and ``executor`` (where blocking disk work runs).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from .. import protocol
from .._native import native
from ..auth import AcceptorAuth, AuthError, ConnectorAuth, Principal, load_acceptor, load_connector
from ..clock import SYSTEM_CLOCK, Clock
from ..coordinator.service import Coordinator
from ..dataplane import StorageWorker
from ..dataplane.metrics import TransactionMetrics
from ..dataplane.worker import broken
from ..director.host import DirectorHost, check_stored_layout
from ..foreman import Foreman, RoleFactory, WorkerFactory, registry
from ..gateway import Gateway
from ..metrics import MetricsServer, Registry
from ..protocol import Caller, Layout, Service
from ..transport import ConnInfo, RpcChannel, Transport
from ..wire import Request, WireError
from .authorize import Authority
from .config import ConfigError, NodeConfig, parse_address
from .local_channel import LocalFirstChannel
from .metrics import PeerProber, node_registry
from .own_workers import OwnWorkersDialer

log = logging.getLogger("bedrock_cp.node")


class NodeNetwork(Protocol):
    """What a node needs from its network (the TCP transport, or the simulator's).

    It delivers what arrives through the node's :class:`NetworkCallbacks`,
    sends Raft messages to peers, and gives the node's parts the channel they
    call other nodes through (as this node).
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def send_raft(self, to: int, data: bytes) -> None: ...

    def set_peers(self, peers: Mapping[int, str]) -> None: ...

    def channel(self) -> RpcChannel:
        """A new channel for calls from this node to any node's listener."""


@dataclass(frozen=True)
class NetworkCallbacks:
    """How the network delivers what it receives to the node."""

    on_raft: Callable[[int, list[bytes]], None]
    on_peer_lost: Callable[[int], None]
    on_request: Callable[[Request, ConnInfo], Awaitable[msgspec.Raw]]


@dataclass(frozen=True)
class NodeCredentials:
    """A node's loaded credentials: what its listener accepts, how it connects."""

    acceptor: AcceptorAuth
    connector: ConnectorAuth


def load_credentials(config: NodeConfig) -> NodeCredentials:
    """Load ``config.auth``; raises ConfigError (naming what is missing) when the
    mode needs credentials that are not there: a node never starts open by accident."""
    try:
        creds = NodeCredentials(
            load_acceptor(config.auth, config.cluster), load_connector(config.auth, node=True)
        )
    except AuthError as exc:
        raise ConfigError(f"node {config.id}: {exc}") from None
    if config.auth.mode == "none":
        log.warning(
            'node %d runs WITHOUT AUTHENTICATION (auth.mode = "none"): anyone who can '
            "reach %s can change the cluster",
            config.id,
            config.listen,
        )
    return creds


NetworkFactory = Callable[[NodeConfig, NetworkCallbacks, NodeCredentials], NodeNetwork]


def tcp_network(
    config: NodeConfig, callbacks: NetworkCallbacks, credentials: NodeCredentials
) -> Transport:
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
        auth=credentials.acceptor,
        connector_auth=credentials.connector,
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
        self.dialer: Caller | None = None
        self.local_channel: LocalFirstChannel | None = None
        #: How this node's workers reach workers (its own answer at once).
        self.worker_dialer: OwnWorkersDialer | None = None
        #: The Gateway's own short cut to this node (its caller is not closed apart).
        self._gateway_local: LocalFirstChannel | None = None
        self.recovery: DirectorHost | None = None
        self.transaction_metrics = TransactionMetrics()
        #: Every metric of this node (render() gives Prometheus text); set once started.
        self.metrics: Registry | None = None
        self._metrics_server: MetricsServer | None = None
        self._prober: PeerProber | None = None
        self.authority = Authority(epoch=self._known_epoch, directory=self._directory)
        self._consensus: native.Consensus | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self.fatal: BaseException | None = None
        self._clock: Clock = SYSTEM_CLOCK
        #: When Raft traffic last arrived from each peer (see :meth:`last_heard`).
        self._heard: dict[int, float] = {}
        #: Rounds waiting for the first wake-up of the Raft tick timer at or after
        #: their loop time, or for a lost peer: see :meth:`next_round`.
        self._round_waiters: list[tuple[float, asyncio.Future[None]]] = []
        self._heartbeat_s = 0.05
        #: Who this node's workers are when they call each other.
        self._principal = Principal.node(config.id)

    @classmethod
    async def start(
        cls,
        config: NodeConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        token_bytes: Callable[[int], bytes] = os.urandom,
        network_factory: NetworkFactory = tcp_network,
        executor: concurrent.futures.Executor | None = None,
        disk: native.MemDisk | None = None,
        worker_factories: Mapping[str, WorkerFactory] | None = None,
        role_factories: Mapping[str, RoleFactory] | None = None,
    ) -> Node:
        """Open the WAL, restore the state, start the network and the Raft loop,
        boot the Foreman's workers and start the Gateway.

        The seams (see the module docstring): ``clock``; ``rng`` seeds every
        random choice of the node (default: a fresh OS-seeded generator);
        ``token_bytes(n)`` makes the unguessable tokens (the Director's unlock
        tokens); ``network_factory``; ``executor`` runs blocking disk work
        (default: a dedicated WAL thread; the simulator passes an inline one);
        ``disk`` puts every WAL of the node on an in-memory disk (simulation,
        power-loss tests). ``worker_factories`` is the registry of worker kinds
        (default: this build's, :mod:`bedrock_cp.foreman.registry`); the node
        offers the kinds ``config.capabilities`` lists (a kind missing from the
        registry is a ConfigError).
        """
        rng = rng or random.Random()
        self = cls(config)
        self._clock = clock
        loop = asyncio.get_running_loop()
        credentials = load_credentials(config)
        _private_directory(Path(config.data_dir))
        callbacks = NetworkCallbacks(self._on_raft, self._on_peer_lost, self._on_request)
        network = network_factory(config, callbacks, credentials)
        self.network = network
        # Workers reach other workers through the nodes' ports, as this node.
        # Calls to this node itself are served in-process (see LocalFirstChannel).
        self.local_channel = LocalFirstChannel(
            network.channel(), config.advertised, config.id, self._on_request
        )
        self.dialer = Caller(
            config.cluster,
            auth=credentials.connector,
            node_id=config.id,
            channel=self.local_channel,
        )
        self.worker_dialer = OwnWorkersDialer(self.dialer, config.advertised, self._answer_now)
        ctx = registry.WorkerContext(
            cluster_id=config.cluster,
            dialer=self.worker_dialer,
            fsync=config.fsync,
            current_layout=self._current_layout,
            idempotency_retention=config.idempotency_retention_ms / 1000,
            transaction_metrics=self.transaction_metrics,
            storage_flush=config.storage_flush_ms / 1000,
            log_generation_bytes=config.log_generation_bytes,
            clock=clock,
            executor=executor,
            disk=disk,
            rng=random.Random(rng.getrandbits(64)),
        )
        try:
            factories = registry.offered(
                list(config.capabilities),
                registry.worker_factories(ctx) if worker_factories is None else worker_factories,
            )
        except KeyError as exc:
            raise ConfigError(f"node {config.id}: {exc.args[0]}") from None
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
        self._gateway_local = LocalFirstChannel(
            network.channel(), config.advertised, config.id, self._on_request
        )
        gateway_caller = Caller(
            config.cluster,
            auth=credentials.connector,
            node_id=config.id,
            channel=self._gateway_local,
        )
        try:
            coordinator = Coordinator(
                node_id=config.id,
                address=config.advertised,
                configured=config.coordinator_map(),
                consensus=consensus,
                network=network,
                tick_interval=timers.tick_ms / 1000,
                # After a stall of more than a heartbeat interval, give-ups wait
                # that long for the peers' messages.
                stall_hold=timers.heartbeat_ms / 1000,
                compact_every=config.snapshot_every,
                compact_bytes=config.snapshot_bytes,
                executor=executor,
                clock=clock,
            )
            coordinator.runner.on_fatal = self._on_fatal
            coordinator.runner.on_timer = self._raft_timer_woke
            self._heartbeat_s = timers.heartbeat_ms / 1000
            self.coordinator = coordinator
            node_name = str(config.id)
            foreman = Foreman(
                node_name,
                config.advertised,
                Path(config.data_dir),
                factories,
                roles=registry.role_factories(ctx) if role_factories is None else role_factories,
                executor=executor,
                wall_clock_ms=clock.wall_ms,
            )
            self.foreman = foreman
            self.gateway = Gateway(
                node_name,
                config.advertised,
                [a for _, a in sorted(config.coordinator_map().items())],
                config.cluster,
                capabilities=foreman.capabilities,
                services=self._services,
                on_layout=self._on_layout,
                rng=random.Random(rng.getrandbits(64)),
                caller=gateway_caller,
                # Its own coordinator answers in-process (the gateway's channel
                # serves this node's own address locally).
                own_coordinator=True,
            )
            foreman.on_change = self.gateway.refresh
            # The leader's Director runs here, reaching workers through the dialer.
            self.recovery = DirectorHost(
                coordinator,
                foreman,
                self.dialer,
                clock=clock,
                rng=random.Random(rng.getrandbits(64)),
                token_bytes=token_bytes,
                last_heard=self.last_heard,
                next_round=self.next_round,
                quiet_peers=lambda: self.quiet_peers(2 * self._heartbeat_s),
            )
            coordinator.epoch_listener = self.recovery
            coordinator.recovery_status = self.recovery.status_dict
            self.metrics = node_registry(self, self.transaction_metrics)
            if config.metrics_listen:
                host, port = parse_address(config.metrics_listen, what="metrics_listen")
                self._metrics_server = MetricsServer(host, port, self.metrics.render)
                await self._metrics_server.start()
                self._prober = PeerProber(self.dialer, coordinator.peer_addresses)
                self.metrics.register(self._prober.rtt)
            await network.start()
            coordinator.start()
            await foreman.boot()
            self.gateway.start()
            if self._prober is not None:
                self._prober.start()
        except BaseException:
            if self._metrics_server is not None:
                await self._metrics_server.stop()
            if self.foreman is not None:
                await self.foreman.stop()
            await gateway_caller.close()
            await self.dialer.close()
            consensus.close()
            raise
        log.info(
            "node %d started on %s, reached at %s (cluster %r)",
            config.id,
            config.listen,
            config.advertised,
            config.cluster,
        )
        return self

    async def stop(self) -> None:
        """Stop the Raft loop, close every connection and the WAL."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            if self._prober is not None:
                await self._prober.stop()
            if self._metrics_server is not None:
                await self._metrics_server.stop()
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
            if self._gateway_local is not None:
                self._gateway_local.abort()
        finally:
            if self._consensus is not None:
                self._consensus.close()
            self._stopped.set()
            log.info("node %d stopped", self.id)

    def abort(self) -> None:
        """Stop at once, as kill -9 would: no clean shutdown of anything.

        What the WAL wrote stays (a crash loses only what was never written);
        the simulator uses this to crash nodes (and cuts the node off its
        network and disk). The Director and every worker and role are dropped
        on the spot. A WAL write in flight on the WAL
        thread finishes there, unseen (as a killed process's last write may
        still reach the disk): the WAL's files are released once it is done
        (``closed``), never while it runs.
        """
        self._stopping = True
        if self.recovery is not None:
            self.recovery.abort()
        if self.gateway is not None:
            self.gateway.abort()
        if self.foreman is not None:
            self.foreman.abort()
        if self.coordinator is not None:
            self.coordinator.runner.abort()
        for local in (self.local_channel, self._gateway_local):
            if local is not None:
                local.abort()  # what it serves dies with the node, as over the network
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

    def last_heard(self, node: str) -> float | None:
        """When (this node's clock) Raft traffic last arrived from node ``node``,
        or None (this node; a node that sent none: no coordinator; a peer whose
        connections broke since: a dead process's are reset at once).

        The leader's Director takes it as proof that a coordinator's process runs
        (it answers every heartbeat), instead of calling its components every round.
        """
        peer = int(node) if node.isdigit() else 0
        return None if peer == self.id else self._heard.get(peer)

    def _on_raft(self, peer: int, messages: list[bytes]) -> None:
        # ``peer`` is the connection's authenticated node: only a node's own traffic vouches for it.
        self._heard[peer] = self._clock.monotonic()
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

    async def next_round(self, interval: float) -> None:
        """Wait about ``interval`` for a Director's next round (its watch, its
        data distribution): until the first wake-up of the Raft tick timer
        after ``interval`` less one heartbeat interval — on the leader, where
        the Director runs, that timer wakes for every heartbeat, so the round
        costs the process no wake-up of its own. At once when a peer is lost;
        at most ``interval`` plus two heartbeat intervals."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        woke: asyncio.Future[None] = loop.create_future()
        # One future per round, resolved only by the wake-up that ends it, not
        # an ``asyncio.wait`` per heartbeat: an idle leader's watch waits for
        # rounds all the time.
        self._round_waiters.append((start + max(0.0, interval - self._heartbeat_s), woke))
        give_up = loop.call_at(start + interval + 2 * self._heartbeat_s, _settle, woke)
        try:
            await woke
        finally:
            give_up.cancel()

    def quiet_peers(self, after: float) -> frozenset[str]:
        """The peers heard from, but not for ``after`` seconds: every coordinator
        answers each heartbeat of a leader and sends its own as one, so two
        heartbeat intervals of silence mean a stopped node or a cut link."""
        now = self._clock.monotonic()
        return frozenset(str(p) for p, heard in self._heard.items() if now - heard > after)

    def _raft_timer_woke(self, peer_lost: bool = False) -> None:
        waiting: list[tuple[float, asyncio.Future[None]]] = []
        for earliest, woke in self._round_waiters:
            if woke.done():  # given up, or its round was cancelled
                continue
            if peer_lost or woke.get_loop().time() >= earliest:
                woke.set_result(None)
            else:
                waiting.append((earliest, woke))
        self._round_waiters = waiting

    def _on_peer_lost(self, peer: int) -> None:
        # Its process died (its kernel reset our connections): it vouches for
        # nothing until its traffic comes back, so the Director asks at once.
        self._heard.pop(peer, None)
        self._raft_timer_woke(peer_lost=True)
        if self.coordinator is not None and not self._stopping:
            self.coordinator.runner.peer_unreachable(peer)

    async def _on_request(self, request: Request, info: ConnInfo) -> msgspec.Raw:
        try:
            body = protocol.decode_request(bytes(request.body))
        except WireError as exc:
            return msgspec.Raw(protocol.encode(protocol.Rejected(f"bad request: {exc}")))
        refusal = await self.authority.authorize(body, info.principal)
        if refusal is None and isinstance(body, protocol.StoreLayoutRequest):
            refusal = self._check_layout(body)
        if refusal is not None:
            if isinstance(refusal, protocol.Unauthorized):
                log.warning(
                    "refused %s from %s (%s): %s",
                    refusal.request,
                    refusal.principal,
                    info.address,
                    refusal.reason,
                )
            return msgspec.Raw(protocol.encode(refusal))
        return msgspec.Raw(protocol.encode(await self.handle(body)))

    def _check_layout(self, body: protocol.StoreLayoutRequest) -> protocol.Response | None:
        """A layout stored by request must decode and name registered workers."""
        if self.coordinator is None:
            return protocol.Unavailable("this node runs no coordinator")
        state = self.coordinator.state
        problem = check_stored_layout(
            body.layout,
            epoch=body.epoch,
            old=state.layout.layout if state.layout is not None else None,
            directory=state.directory,
        )
        return None if problem is None else protocol.Rejected(f"invalid layout: {problem}")

    def _known_epoch(self) -> int:
        """The newest epoch this node knows the coordinators issued."""
        epoch = self.coordinator.state.epoch if self.coordinator is not None else 0
        if self.gateway is not None:
            epoch = max(epoch, self.gateway.epoch)
        return epoch

    def _directory(self) -> Mapping[str, protocol.ServiceRecord]:
        return self.coordinator.state.directory if self.coordinator is not None else {}

    async def handle(self, body: protocol.Request) -> protocol.Response:
        """Route one decoded request (see the module docstring)."""
        if isinstance(body, protocol.CoordinatorRequest):
            assert self.coordinator is not None
            return await self.coordinator.handle_body(body)
        if isinstance(body, protocol.GatewayRequest):
            if self.gateway is None:
                return protocol.Unavailable("this node runs no gateway")
            return await self.gateway.layout_after(body.after_epoch, body.wait_ms)
        foreman = self.foreman
        if foreman is None or self._stopping:
            return protocol.Failed("unavailable", "the node is stopping")
        if isinstance(body, protocol.ForemanRequest):
            return await foreman.handle(body)
        worker = foreman.route(body.worker)
        if worker is None:
            return protocol.Failed("no_such_worker", f"no worker {body.worker!r} on node {self.id}")
        if isinstance(body, protocol.Health):
            # A worker that can no longer do its job (a proxy whose version chain
            # broke, a log whose WAL failed) is as dead as a missing one: the
            # Director's monitoring must see it, or the epoch never ends.
            why = broken(worker)
            if why is not None:
                return protocol.Failed("unavailable", f"worker {body.worker!r} is broken: {why}")
            return protocol.Done()
        try:
            return await worker.handle(body)
        except Exception as exc:
            log.exception("worker %s failed on %s", body.worker, type(body).__name__)
            return protocol.Failed("internal", f"worker {body.worker!r}: {exc!r}")

    def _answer_now(self, body: protocol.Request) -> protocol.Response | None:
        """The answer this node's worker gives ``body`` from another worker of this
        node, when it gives one without waiting (:mod:`.own_workers`); None: send
        it the usual way (which also answers a stopping node and an unknown worker)."""
        foreman = self.foreman
        if (
            foreman is None
            or self._stopping
            or not isinstance(body, protocol.WorkerRequest)
            or isinstance(body, protocol.Health)
        ):
            return None
        answer_now = getattr(foreman.route(body.worker), "answer_now", None)
        if answer_now is None or not self.authority.allows_at_once(body, self._principal):
            return None
        answer: protocol.Response | None = answer_now(body)
        return answer

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


def _private_directory(path: Path) -> None:
    """Create the data directory readable by this user only (0700), or make it so."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)


def _settle(future: asyncio.Future[None]) -> None:
    """Resolve ``future`` unless it already is (a timer's end of a wait)."""
    if not future.done():
        future.set_result(None)
