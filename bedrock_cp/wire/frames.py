"""The frames nodes and clients exchange, as msgspec Structs.

Every frame is a tagged, ``array_like`` Struct so a frame on the wire is a
msgpack array ``[tag, field, ...]``: no field names, one strict decoder for
the whole :data:`Frame` union. The transport only needs these frames; what a
request means is carried opaquely in :attr:`Request.body` and decoded by the
layer above (:mod:`bedrock_cp.protocol`), so adding an API never touches the wire.

A connection starts with a handshake: the connecting side sends
:class:`Hello`; the acceptor answers :class:`Welcome` or :class:`Refused` (and
closes). With a shared secret or a token (``Hello.auth`` ``"secret"`` or
``"token"``) two frames come between: the acceptor's :class:`Challenge` (its
nonce and proof) and the connector's :class:`Proof` (see
:mod:`bedrock_cp.auth.proof`). Under TLS the certificates authenticate both
sides before the Hello. After the handshake, a peer sends only
:class:`RaftBatch` and a client only :class:`Request`; the acceptor answers
requests with :class:`Response`.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

#: Bumped on any incompatible change to the frames below.
PROTOCOL_VERSION: Final = 2


class Hello(msgspec.Struct, tag="hello", array_like=True, frozen=True, gc=False):
    """First frame of the connecting side.

    ``kind="peer"`` is another coordinator that will send Raft traffic;
    ``kind="client"`` sends requests: a client (``node_id`` 0) or a node calling
    another node (its own ``node_id``). A client that does not know the cluster
    yet (CLI discovery) sends an empty ``cluster_id``; the :class:`Welcome` tells
    it which cluster it reached. Peers must always name it.

    ``auth`` says how the connector proves itself: ``"tls"`` (its certificate),
    ``"secret"`` (a node: the cluster secret), ``"token"`` (a client: the token
    called ``name``) or ``"none"``; ``nonce`` is its fresh nonce for the last two.
    """

    protocol: int
    cluster_id: str
    node_id: int
    kind: Literal["peer", "client"]
    auth: Literal["tls", "secret", "token", "none"] = "none"
    name: str = ""
    nonce: bytes = b""


class Welcome(msgspec.Struct, tag="welcome", array_like=True, frozen=True, gc=False):
    """The acceptor's answer to an acceptable :class:`Hello`: who it is."""

    protocol: int
    cluster_id: str
    node_id: int


class Challenge(msgspec.Struct, tag="challenge", array_like=True, frozen=True, gc=False):
    """The acceptor's answer to a secret or token Hello: its fresh ``nonce``, its
    ``node_id`` and its ``proof`` of the key over both nonces."""

    nonce: bytes
    node_id: int
    proof: bytes


class Proof(msgspec.Struct, tag="proof", array_like=True, frozen=True, gc=False):
    """The connector's proof of the key over both nonces, after a :class:`Challenge`."""

    proof: bytes


class Refused(msgspec.Struct, tag="refused", array_like=True, frozen=True, gc=False):
    """Sent by the acceptor just before it closes a connection whose handshake failed."""

    reason: str


class RaftBatch(msgspec.Struct, tag="raft", array_like=True, frozen=True, gc=False):
    """Encoded Raft messages for one peer, in send order; opaque bytes from the native core."""

    messages: list[bytes]


class Request(msgspec.Struct, tag="req", array_like=True, frozen=True, gc=False):
    """A client's call. ``id`` pairs it with its :class:`Response`; ``timeout_ms`` is
    the caller's deadline, which the server enforces too. ``body`` is encoded by the
    layer above (see :func:`bedrock_cp.wire.encode_body`)."""

    id: int
    timeout_ms: int
    body: msgspec.Raw


class Response(msgspec.Struct, tag="resp", array_like=True, frozen=True, gc=False):
    """The answer to the :class:`Request` with the same ``id``; responses may arrive
    in any order. ``body`` is the handler's answer or a :class:`TransportError`."""

    id: int
    body: msgspec.Raw


Frame = Hello | Challenge | Proof | Welcome | Refused | RaftBatch | Request | Response


class TransportError(msgspec.Struct, tag="transport_error", array_like=True, frozen=True, gc=False):
    """A :attr:`Response.body` produced by the transport instead of the handler.

    ``code`` is one of :data:`TIMEOUT` (the handler missed the request's deadline),
    :data:`INTERNAL` (the handler raised) or :data:`OVERLOADED` (too many requests
    in flight on that connection). It is a body, not a frame: the layer above sees
    it where it expects its own answer, and ``RpcClient.call`` raises it.
    """

    code: str
    message: str


TIMEOUT: Final = "timeout"
INTERNAL: Final = "internal"
OVERLOADED: Final = "overloaded"
