"""The coordinator client: ``client = await bedrock_cp.connect(cluster)``.

It sends writes to the leader through a
:class:`~bedrock_cp.client.coordinators.CoordinatorLink` (discovery, redirects,
hedging, suspicion and backoff, shared with every node's Gateway), retrying
until the request's deadline.
Every write carries this client's session (a random client id and a sequence
number fixed per logical write), so a retry after a lost reply or a failover is
applied exactly once. Directory writes made concurrently (by several tasks, in
the same event-loop pass) travel to the leader as one request
(:class:`~bedrock_cp.client.coalescing.WriteCoalescer`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from .. import protocol
from ..auth import AuthError, ConnectorAuth, load_connector
from ..auth.credentials import NO_AUTH
from ..protocol import Caller, GetLayout, Layout, NodeRecord, ServiceRecord, decode_layout
from ..transport import ConnectionLost, HandshakeRefused, RpcChannel
from .cluster_file import ClusterFile, resolve_cluster
from .coalescing import WriteCoalescer
from .coordinators import RETRYABLE, CoordinatorLink, NoLeader, abandon, describe


class ClientError(Exception):
    """Base class of the client's errors."""


class ClusterUnavailable(ClientError):
    """No leader could be reached before the deadline."""


class RequestRejected(ClientError):
    """The cluster refused the request; the message says why."""


async def connect(
    cluster: str | Path | ClusterFile,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - bounds the first contact, not one await
    request_timeout: float = 10.0,
    channel: RpcChannel | None = None,
    rng: random.Random | None = None,
) -> Client:
    """A client for ``cluster`` (a cluster.toml path or ``host:port,...``).

    Raises ClusterUnavailable if no coordinator answers within ``timeout``.
    ``channel`` and ``rng`` are the simulation's seams (see :class:`Client`).
    """
    cf = cluster if isinstance(cluster, ClusterFile) else resolve_cluster(cluster)
    client = Client(cf, request_timeout=request_timeout, channel=channel, rng=rng)
    try:
        await client.ping_any(timeout)
    except BaseException:
        await client.close()
        raise
    return client


class Client:
    """See the module docstring. Create with :func:`connect`.

    Calls go over TCP, or over ``channel`` when given (the simulated network);
    session ids are drawn from ``rng`` (default: OS-seeded).
    """

    def __init__(
        self,
        cluster: ClusterFile,
        *,
        request_timeout: float = 10.0,
        attempt_timeout: float = 0.5,
        channel: RpcChannel | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cluster = cluster
        self.rng = rng or random.Random()
        self.addresses = list(cluster.coordinators)
        self.request_timeout = request_timeout
        # Sessions for exactly-once writes. The coordinators apply a session's
        # writes in seq order and refuse an older seq, so each session carries
        # one write at a time: concurrent writes each take a session of their own
        # from this pool (session id -> last seq used).
        self._free_sessions: list[tuple[int, int]] = []
        #: How this client proves itself (the cluster file's ``[auth]``).
        self.auth = client_credentials(cluster)
        self._caller = Caller(
            cluster.cluster or None, auth=self.auth, connect_timeout=2.0, channel=channel
        )
        #: Where the calls go (a :class:`Database` of this client uses it too).
        self.channel = channel
        #: How calls find and follow the leader.
        self.link = CoordinatorLink(
            self.addresses,
            self._call,
            rng=random.Random(self.rng.getrandbits(64)),
            attempt_timeout=attempt_timeout,
        )
        #: Sends the directory writes of one event-loop pass as one request.
        self._coalescer = WriteCoalescer(self._leader_call, self._free_sessions.append)

    # -- public API -------------------------------------------------------------------

    async def register(self, service_id: str, *, kind: str, address: str, node: str = "") -> int:
        """Register a service; returns the commit index of the write."""
        return await self._write(
            lambda cid, seq: protocol.Register(service_id, kind, address, node, cid, seq)
        )

    async def deregister(self, service_id: str) -> int:
        return await self._write(lambda cid, seq: protocol.Deregister(service_id, cid, seq))

    async def services(self, *, stale: bool = False, page: int = 0) -> list[ServiceRecord]:
        """The directory, sorted by id, read a page at a time (``page``
        services each; 0: as many as the coordinators put in one, 2,000).

        Each page is linearizable unless ``stale`` (then any coordinator
        answers from what it applied, which on a follower trails the leader's
        writes by up to a Raft tick, 10 ms by default, or more when cut off);
        the listing as a whole is not one read: a service registered or
        removed while it runs is in it or not, every other one is in it once.
        """
        out: list[ServiceRecord] = []
        after = ""
        while True:
            body = protocol.ListServices(stale, after, page)
            reply = await (self._any(body) if stale else self._leader_call(body))
            if not isinstance(reply, protocol.ServicesReply):
                raise RequestRejected(unexpected(reply))
            out += reply.services
            if not reply.more or not reply.services:
                return out
            if reply.services[-1].id <= after:
                raise RequestRejected(f"the listing did not advance past {after!r}")
            after = reply.services[-1].id

    async def nodes(self, *, stale: bool = False) -> list[NodeRecord]:
        """What every node's Gateway registered; linearizable unless ``stale``."""
        body = protocol.ListNodes(stale)
        reply = await (self._any(body) if stale else self._leader_call(body))
        if not isinstance(reply, protocol.NodesReply):
            raise RequestRejected(unexpected(reply))
        return reply.nodes

    async def fetch_layout(
        self,
        timeout: float = 2.0,  # noqa: ASYNC109
        *,
        newer_than: int = 0,
        wait: float = 0.0,
    ) -> Layout | None:
        """The newest transaction system layout any node's Gateway holds (None: none yet).

        Gateways cache the layout the leader pushes, so this never loads the leader.
        With ``wait`` > 0 it is a long poll: the first layout newer than
        ``newer_than`` that any Gateway learns is returned at once; after ``wait``
        seconds, the newest held.
        """
        body = GetLayout(newer_than, int(wait * 1000)) if wait > 0 else GetLayout()
        calls = [asyncio.ensure_future(self._call(a, body, timeout + wait)) for a in self.addresses]
        replies: list[protocol.LayoutReply] = []
        try:
            pending: set[asyncio.Future[protocol.Response]] = set(calls)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    r = None if fut.exception() is not None else fut.result()
                    if isinstance(r, protocol.LayoutReply) and r.layout is not None:
                        replies.append(r)
                if wait > 0 and any(r.epoch > newer_than for r in replies):
                    break  # the new epoch is known: no need to wait for the others
        finally:
            abandon(calls)
        for reply in sorted(replies, key=lambda r: -r.epoch):
            assert reply.layout is not None
            try:
                return decode_layout(reply.layout)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # a corrupt TSL: gateways log it; try an older one
        return None

    async def store_layout(self, epoch: int, layout: bytes) -> int:
        """Store the layout of ``epoch``; RequestRejected unless it is the current epoch."""
        return await self._write(
            lambda cid, seq: protocol.StoreLayoutRequest(epoch, layout, cid, seq)
        )

    async def config(self, *, stale: bool = False) -> dict[str, int | list[str]]:
        """The cluster's parameters by name; linearizable unless ``stale``."""
        body = protocol.GetConfig(stale)
        reply = await (self._any(body) if stale else self._leader_call(body))
        if not isinstance(reply, protocol.ConfigReply):
            raise RequestRejected(unexpected(reply))
        return reply.config

    async def update_config(self, changes: dict[str, int | str | list[str]]) -> int:
        """Change cluster parameters (all of them or none; the names and bounds:
        ``docs/configuration.md``); returns the applied index. Raises
        :class:`RequestRejected` naming the first parameter that is wrong."""
        return await self._write(
            lambda cid, seq: protocol.UpdateConfigRequest(dict(changes), cid, seq)
        )

    async def add_coordinator(self, node_id: int, address: str) -> int:
        return await self._write(
            lambda cid, seq: protocol.AddCoordinator(node_id, address, cid, seq)
        )

    async def remove_coordinator(self, node_id: int) -> int:
        return await self._write(lambda cid, seq: protocol.RemoveCoordinator(node_id, cid, seq))

    async def ping_any(self, timeout: float) -> protocol.PingReply:  # noqa: ASYNC109
        replies = await self._ping_all(timeout)
        for reply in replies.values():
            if isinstance(reply, protocol.PingReply):
                return reply
        for reply in replies.values():
            if isinstance(reply, RequestRejected):
                raise reply  # refused the connection: another cluster, no credentials
        last = next((r for r in replies.values() if isinstance(r, ConnectionLost)), None)
        raise ClusterUnavailable(
            f"no coordinator answered within {timeout:g}s (tried {', '.join(self.addresses)})"
            + (f": {last}" if last is not None else "")
        )

    async def status(self, timeout: float = 2.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The cluster as every coordinator reports it (what ``status --json`` prints).

        Coordinators the answers name but this client did not know (added since
        it connected) are asked too, and remembered.
        """
        body = protocol.NodeStatus()
        results = list(
            await asyncio.gather(
                *(self._call(a, body, timeout) for a in self.addresses), return_exceptions=True
            )
        )
        new = {
            address
            for r in results
            if isinstance(r, protocol.NodeStatusReply)
            for address in r.members.values()
            if address and address not in self.addresses
        }
        if new:
            self.addresses.extend(sorted(new))
            results += await asyncio.gather(
                *(self._call(a, body, timeout) for a in sorted(new)), return_exceptions=True
            )
        by_address = {n.address: n for n in self.cluster.nodes}
        recovery_by_id: dict[int, dict[str, Any]] = {}
        nodes: list[dict[str, Any]] = []
        best: protocol.NodeStatusReply | None = None
        for address, result in zip(self.addresses, results, strict=True):
            entry = by_address.get(address)
            if isinstance(result, protocol.NodeStatusReply):
                r = result
                nodes.append(
                    {
                        "id": r.node_id,
                        "address": address,
                        "role": r.role,
                        "state": r.state,
                        "term": r.term,
                        "commit_index": r.commit_index,
                        "applied_index": r.applied_index,
                        "leader": r.leader_id,
                        "epoch": r.epoch,
                        "pid": r.pid,
                        "reachable": True,
                    }
                )
                recovery_by_id[r.node_id] = dict(r.recovery)
                if best is None or (r.term, r.applied_index) > (best.term, best.applied_index):
                    best = r
            else:
                nodes.append(
                    {
                        "id": entry.id if entry else None,
                        "address": address,
                        "role": None,
                        "state": None,
                        "term": None,
                        "commit_index": None,
                        "applied_index": None,
                        "leader": None,
                        "epoch": None,
                        "pid": entry.pid if entry else None,
                        "reachable": False,
                        "error": describe(result),
                    }
                )
        if best is None:
            raise ClusterUnavailable(
                f"no coordinator answered within {timeout:g}s (tried {', '.join(self.addresses)})"
            )
        leader_reply = next(
            (
                n
                for n in nodes
                if n["reachable"] and n["role"] == "leader" and n["term"] == best.term
            ),
            None,
        )
        leader_id = leader_reply["id"] if leader_reply else (best.leader_id or None)
        return {
            "cluster": self.cluster.cluster or None,
            "leader": leader_id,
            "leader_state": leader_reply["state"] if leader_reply else None,
            "term": best.term,
            "epoch": max(n["epoch"] or 0 for n in nodes),
            # What the leader's Director reports (it runs on the leader's node).
            "recovery": _recovery(recovery_by_id.get(leader_id) if leader_id else None),
            "nodes": sorted(nodes, key=lambda n: (n["id"] is None, n["id"] or 0, n["address"])),
            "services": best.services,
        }

    async def close(self) -> None:
        await self._coalescer.close()
        await self._caller.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- leader following -----------------------------------------------------------------

    async def _write(self, make: Callable[[int, int], protocol.WriteRequest]) -> int:
        """One logical write: a fixed (session, seq) across every retry."""
        if self._free_sessions:
            session, last = self._free_sessions.pop()
        else:
            session, last = self.rng.getrandbits(62) | 1, 0
        body = make(session, last + 1)
        if isinstance(body, protocol.BatchedWrite):
            # Sent with the other writes of this event-loop pass; the session
            # comes back once the request carrying it ended.
            reply = await self._coalescer.write(body, (session, last + 1))
        else:
            try:
                reply = await self._leader_call(body)
            finally:
                # Whatever the outcome, seq last+1 is spent; the next write uses last+2.
                self._free_sessions.append((session, last + 1))
        if isinstance(reply, protocol.Rejected):
            raise RequestRejected(reply.reason)  # this write, rejected on apply
        if isinstance(reply, protocol.WriteOk):
            return reply.index
        raise RequestRejected(unexpected(reply))

    async def _leader_call(self, body: protocol.Request) -> protocol.Response:
        """Send to the leader, following redirects and failovers until the deadline."""
        try:
            reply = await self.link.call_leader(body, self.request_timeout)
        except NoLeader as exc:
            raise ClusterUnavailable(str(exc)) from None
        match reply:
            case protocol.Rejected(reason=reason):
                raise RequestRejected(reason)
            case protocol.Unauthorized():
                raise RequestRejected(unauthorized(reply))
        return reply

    async def _ping_all(self, timeout: float) -> dict[str, protocol.Response | BaseException]:  # noqa: ASYNC109
        body = protocol.Ping()
        results = await asyncio.gather(
            *(self._call(a, body, timeout) for a in self.addresses), return_exceptions=True
        )
        return dict(zip(self.addresses, results, strict=True))

    async def _any(self, body: protocol.Request) -> protocol.Response:
        problems = []
        leader = self.link.leader
        for address in [*([leader.address] if leader else []), *self.addresses]:
            try:
                return await self._call(address, body, self.request_timeout)
            except RETRYABLE as exc:
                problems.append(f"{address}: {describe(exc)}")
        raise ClusterUnavailable("no coordinator answered: " + "; ".join(problems))

    async def _call(
        self,
        address: str,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
    ) -> protocol.Response:
        """One call; a node that refuses this client's handshake (another cluster,
        say) rejects the request instead of looking unreachable."""
        try:
            return await self._caller.call(address, body, timeout)
        except HandshakeRefused as exc:
            raise RequestRejected(f"{address} refused the connection: {exc.reason}") from None

    @property
    def cluster_id(self) -> str | None:
        """The cluster's id: given, or learned from the first coordinator reached."""
        return self._caller.cluster_id


def client_credentials(cluster: ClusterFile) -> ConnectorAuth:
    """The credentials the cluster file names (none when it names none)."""
    if cluster.auth is None:
        return NO_AUTH
    try:
        return load_connector(cluster.auth, node=False)
    except AuthError as exc:
        raise ClientError(f"cannot load the client's credentials: {exc}") from None


def unauthorized(reply: protocol.Unauthorized) -> str:
    return f"{reply.request} refused for {reply.principal}: {reply.reason}"


def unexpected(reply: protocol.Response) -> str:
    if isinstance(reply, protocol.Unauthorized):
        return unauthorized(reply)
    return f"unexpected reply {type(reply).__name__}"


def _recovery(reported: dict[str, Any] | None) -> dict[str, Any]:
    """The recovery section of ``status`` with every documented key present."""
    out: dict[str, Any] = {
        "state": "none",
        "phase": None,
        "attempt": None,
        "last_duration_ms": None,
        "timeline": [],
    }
    out.update(reported or {})
    return out
