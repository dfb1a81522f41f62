"""Who may send what: the one authorization check, run before any handler.

The node decodes every request, then asks :func:`authorize` whether the
connection's :class:`~bedrock_cp.auth.Principal` may send it; a refusal is
answered at once (:class:`~bedrock_cp.protocol.Unauthorized`, naming the request
and the principal) and no handler runs, so nothing changes. What each request
type allows is the ``sender`` it declares (:data:`~bedrock_cp.protocol.SENDERS`):

| sender | who may send it |
| --- | --- |
| ``any``, ``client`` | every authenticated principal (node, admin, client) |
| ``peer`` | a cluster node |
| ``admin`` | an admin |
| ``director`` | a cluster node, for the epoch the coordinators issued last |

With authentication off (``auth.mode = "none"``) every connection is
``anonymous`` and may send anything but the epoch rule below still holds.

Beyond the sender, four requests are checked against what they touch:

- ``RegisterNodeRequest``: a node registers only itself (an admin may register any).
- ``Register``: a client files services under no node (``""``); a node under
  itself or none; an admin anywhere.
- ``Deregister``: a client may remove only services filed under no node, a node
  only its own and those; an admin any.
- ``WriteBatch``: each write in it, as if sent alone; one that may not be sent
  refuses the whole batch, naming it (its writes declare the batch's sender).

The Director's epoch: a Director is code on the leader's node, so its requests
come over that node's connections. Its request must name the current epoch: an
older one is answered ``NewerEpoch`` (the sender is superseded); a newer one is
waited for briefly — this node may not have applied the ``BeginEpoch`` that
issued it yet — and refused if it does not appear: an epoch the coordinators
never issued (a forged "lock every log with epoch 2^63") changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Final

from .. import protocol
from ..auth import Principal
from ..protocol import CLIENT_NODE, SENDERS, Sender, ServiceRecord

#: How long a request naming a newer epoch waits for this node to learn of it.
EPOCH_CATCH_UP: Final = 2.0

#: What each kind of principal may send, by the request's declared sender.
_ALLOWED: Final[Mapping[Sender, frozenset[str]]] = {
    Sender.ANY: frozenset({"node", "admin", "client", "anonymous"}),
    Sender.CLIENT: frozenset({"node", "admin", "client", "anonymous"}),
    Sender.PEER: frozenset({"node", "anonymous"}),
    Sender.DIRECTOR: frozenset({"node", "anonymous"}),
    Sender.ADMIN: frozenset({"admin", "anonymous"}),
}


class Authority:
    """What the check needs from the node: the epoch it knows, and the directory."""

    def __init__(
        self,
        *,
        epoch: Callable[[], int],
        directory: Callable[[], Mapping[str, ServiceRecord]],
        catch_up: float = EPOCH_CATCH_UP,
    ) -> None:
        self.epoch = epoch
        self.directory = directory
        self.catch_up = catch_up

    async def authorize(
        self, body: protocol.Request, principal: Principal
    ) -> protocol.Response | None:
        """None if ``principal`` may send ``body``; otherwise the reply refusing it."""
        problem = self._problem(body, principal)
        if problem is not None:
            return refuse(body, principal, problem)
        if SENDERS[type(body)] is Sender.DIRECTOR:
            return await self._current_epoch(body, principal)
        return None

    def allows_at_once(self, body: protocol.Request, principal: Principal) -> bool:
        """Whether ``principal`` may send ``body``, decided without waiting: never
        for a Director request (its epoch check may wait for the apply loop)."""
        return SENDERS[type(body)] is not Sender.DIRECTOR and self._problem(body, principal) is None

    def _problem(self, body: protocol.Request, p: Principal) -> str | None:
        """Why ``p`` may not send ``body`` (its sender, then what it touches); None if it may.

        A ``WriteBatch`` is checked write by write, as if each were sent alone
        (its writes are never Director requests: they declare the batch's sender).
        """
        sender = SENDERS[type(body)]
        if p.role not in _ALLOWED[sender]:
            return f"only {_WHO[sender]} may send it"
        if isinstance(body, protocol.WriteBatch):
            for position, write in enumerate(body.writes):
                problem = self._problem(write, p)
                if problem is not None:
                    return f"its write {position} ({type(write).__name__}): {problem}"
            return None
        return self._scope(body, p)

    def _scope(self, body: protocol.Request, p: Principal) -> str | None:
        if p.role in ("admin", "anonymous"):
            return None
        own = str(p.node_id) if p.role == "node" else None
        match body:
            case protocol.RegisterNodeRequest(node=node) if node != own:
                return f"it registers node {node!r}; {p} may register only itself"
            case protocol.Register(node=node) if node not in ("", CLIENT_NODE, own):
                return f"it files the service under node {node!r}"
            case protocol.Deregister(service_id=service_id):
                record = self.directory().get(service_id)
                if record is not None and record.node not in (CLIENT_NODE, own):
                    return f"service {service_id!r} belongs to node {record.node!r}"
        return None

    async def _current_epoch(
        self, body: protocol.Request, principal: Principal
    ) -> protocol.Response | None:
        wanted: int = getattr(body, "epoch")  # noqa: B009 - every Director request has one
        current = self.epoch()
        if wanted > current:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.catch_up
            # The apply loop has no epoch event to wait on: poll, bounded.
            while self.epoch() < wanted and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            current = self.epoch()
        if wanted == current:
            return None
        if wanted < current:
            if isinstance(body, protocol.StoreLayoutRequest):
                return protocol.Rejected(
                    f"layout is for epoch {wanted} but the current epoch is {current}"
                )
            return protocol.NewerEpoch(current)
        return refuse(
            body,
            principal,
            f"epoch {wanted} was not issued by the coordinators (the current epoch is {current})",
        )


_WHO: Final[Mapping[Sender, str]] = {
    Sender.ANY: "anyone authenticated",
    Sender.CLIENT: "an authenticated client",
    Sender.PEER: "a cluster node",
    Sender.DIRECTOR: "the current epoch's Director",
    Sender.ADMIN: "an admin",
}


def refuse(body: protocol.Request, principal: Principal, reason: str) -> protocol.Unauthorized:
    return protocol.Unauthorized(type(body).__name__, str(principal), reason)
