"""The handshake rules, as pure functions, and what a handshake establishes.

The acceptor checks a :class:`Hello` (:func:`check_hello`: protocol, cluster,
who may open a Raft connection), then authenticates it (:func:`authenticate`:
the principal a TLS certificate names, or a :class:`Challenge` for a secret or
token, whose answer :func:`check_proof` verifies). The connector checks the
:class:`Challenge` (:func:`answer_challenge`) and the :class:`Welcome`
(:func:`check_welcome`). Each check returns None when acceptable, or the
reason it is not — a short code for ``stats`` and a sentence for the log and the
``Refused`` frame. Nothing about the connection changes state before these pass,
and no reason ever contains key material.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..auth import ANONYMOUS, AcceptorAuth, ConnectorAuth, Principal
from ..auth.proof import NONCE_SIZE, new_nonce, proof, same
from ..wire import PROTOCOL_VERSION, Challenge, Hello, Proof, Welcome

#: (stats code, human-readable reason)
Problem = tuple[str, str]

#: What a refused authentication says (the log line says more; the remote learns no detail).
AUTH_FAILED = "authentication failed"


@dataclass(frozen=True, slots=True)
class ConnInfo:
    """Who is on an accepted connection: ``kind`` what it carries (Raft or
    requests), ``node_id`` the authenticated node id (0 for clients), and
    ``principal`` who the handshake proved it to be."""

    kind: Literal["peer", "client"]
    node_id: int
    address: str
    principal: Principal = ANONYMOUS


def check_hello(
    hello: Hello, *, cluster_id: str, node_id: int, is_peer: Callable[[int], bool]
) -> Problem | None:
    """Why the acceptor ``node_id`` of ``cluster_id`` must refuse ``hello``, or None."""
    if hello.protocol != PROTOCOL_VERSION:
        return "bad_protocol", f"protocol version {hello.protocol} != {PROTOCOL_VERSION}"
    # A client may leave the cluster id empty to discover it from the Welcome.
    if hello.cluster_id != cluster_id and not (hello.kind == "client" and hello.cluster_id == ""):
        return "wrong_cluster", f"cluster id {hello.cluster_id!r} != {cluster_id!r}"
    if hello.kind == "peer":
        if hello.node_id == node_id:
            return "own_node_id", f"node id {hello.node_id} is this node's own"
        if not is_peer(hello.node_id):
            return "unknown_peer", f"node id {hello.node_id} is not a known peer"
    return None


@dataclass(frozen=True, slots=True)
class PendingProof:
    """A secret or token Hello was answered with ``challenge``; the connector's
    proof must equal ``expected`` for the connection to be ``principal``'s."""

    principal: Principal
    challenge: Challenge
    expected: bytes


def authenticate(
    hello: Hello, *, auth: AcceptorAuth, node_id: int, tls_principal: Principal | None
) -> Problem | Principal | PendingProof:
    """Who ``hello`` is, what to challenge it with, or why it is refused.

    ``tls_principal`` is what the connection's verified certificate names (TLS mode).
    """
    if auth.mode == "none":
        return ANONYMOUS
    if auth.mode == "tls":
        if tls_principal is None:
            return "bad_certificate", "the client certificate names no principal of this cluster"
        claimed = hello.node_id
        if (hello.kind == "peer" or claimed) and (
            tls_principal.role != "node" or tls_principal.node_id != claimed
        ):
            return "wrong_identity", f"claims node {claimed} but its certificate is {tls_principal}"
        return tls_principal
    # secret mode
    if len(hello.nonce) != NONCE_SIZE:
        return "no_credentials", "authentication required (secret or token)"
    if hello.auth == "secret":
        if hello.node_id < 1 or auth.node_key is None:
            return "bad_credentials", "a secret Hello must name its node"
        principal, key = Principal.node(hello.node_id), auth.node_key
    elif hello.auth == "token" and hello.kind == "client" and hello.node_id == 0:
        found = auth.tokens.get(hello.name)
        if found is None:
            return "unknown_token", f"no token called {hello.name[:64]!r}"
        principal, key = found
    else:
        return "no_credentials", "authentication required (secret or token)"
    ours = new_nonce()

    def mac(role: Literal["acceptor", "connector"]) -> bytes:
        return proof(
            key,
            role,
            cluster=hello.cluster_id,
            kind=hello.kind,
            node_id=hello.node_id,
            name=hello.name,
            acceptor_id=node_id,
            connector_nonce=hello.nonce,
            acceptor_nonce=ours,
        )

    return PendingProof(principal, Challenge(ours, node_id, mac("acceptor")), mac("connector"))


def check_proof(pending: PendingProof, answer: Proof) -> Problem | None:
    """Why the connector's proof is wrong (a wrong key, or a replayed handshake), or None."""
    if not same(pending.expected, answer.proof):
        return "bad_proof", "the proof does not match (wrong secret or token, or a replay)"
    return None


def answer_challenge(
    hello: Hello, challenge: Challenge, auth: ConnectorAuth, expect_node: int | None
) -> str | Proof:
    """The connector's :class:`Proof` for ``challenge``, or why the acceptor is not trusted."""
    if auth.method not in ("secret", "token"):
        return "the remote asked for a secret, but this side authenticates otherwise"
    if expect_node is not None and challenge.node_id != expect_node:
        return f"remote is node {challenge.node_id}, not node {expect_node}"

    def mac(role: Literal["acceptor", "connector"]) -> bytes:
        return proof(
            auth.key,
            role,
            cluster=hello.cluster_id,
            kind=hello.kind,
            node_id=hello.node_id,
            name=hello.name,
            acceptor_id=challenge.node_id,
            connector_nonce=hello.nonce,
            acceptor_nonce=challenge.nonce,
        )

    if len(challenge.nonce) != NONCE_SIZE or not same(mac("acceptor"), challenge.proof):
        return "the remote did not prove the cluster's credentials (a wrong secret or token?)"
    return Proof(mac("connector"))


def hello_for(
    auth: ConnectorAuth, *, cluster_id: str, node_id: int, kind: Literal["peer", "client"]
) -> Hello:
    """The Hello a connector with ``auth`` sends (a fresh nonce for secrets and tokens)."""
    nonce = new_nonce() if auth.method in ("secret", "token") else b""
    return Hello(PROTOCOL_VERSION, cluster_id, node_id, kind, auth.method, auth.name, nonce)


def check_welcome(welcome: Welcome, *, cluster_id: str | None, node_id: int | None) -> str | None:
    """Why the connector must drop ``welcome``, or None.

    ``cluster_id``/``node_id`` None accept any (a client discovering the cluster).
    """
    if welcome.protocol != PROTOCOL_VERSION:
        return f"remote speaks protocol version {welcome.protocol}, not {PROTOCOL_VERSION}"
    if cluster_id is not None and welcome.cluster_id != cluster_id:
        return f"remote is in cluster {welcome.cluster_id!r}, not {cluster_id!r}"
    if node_id is not None and welcome.node_id != node_id:
        return f"remote is node {welcome.node_id}, not node {node_id}"
    return None
