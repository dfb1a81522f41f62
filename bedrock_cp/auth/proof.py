"""The shared-secret handshake: each side proves the key over both fresh nonces.

The connector sends a random nonce in its ``Hello``; the acceptor answers with
its own random nonce and its proof; the connector checks it and sends its own
proof; the acceptor checks that. Each proof is

    HMAC-SHA256(key, [role, cluster, kind, claimed node id, name, acceptor id,
                      connector nonce, acceptor nonce])

with ``role`` ``"acceptor"`` or ``"connector"`` (a proof cannot be reflected
back). A recorded handshake cannot be replayed: the acceptor's nonce is fresh
on every connection, so an old connector proof never matches. The key is the
cluster secret (nodes) or a client's token, each first passed through HMAC
with a fixed label so the raw file content is never used as a key twice.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Final, Literal

import msgspec

#: Bytes of every nonce.
NONCE_SIZE: Final = 32
_LABEL: Final = b"bedrock-cp handshake v1"
_encoder = msgspec.msgpack.Encoder()


def derive_key(material: bytes) -> bytes:
    """The HMAC key for a secret or token as read from its file (whitespace stripped)."""
    return hmac.new(material.strip(), _LABEL, hashlib.sha256).digest()


def new_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def proof(
    key: bytes,
    role: Literal["acceptor", "connector"],
    *,
    cluster: str,
    kind: str,
    node_id: int,
    name: str,
    acceptor_id: int,
    connector_nonce: bytes,
    acceptor_nonce: bytes,
) -> bytes:
    """The proof ``role`` sends for this handshake (see the module docstring)."""
    transcript = _encoder.encode(
        [role, cluster, kind, node_id, name, acceptor_id, connector_nonce, acceptor_nonce]
    )
    return hmac.new(key, transcript, hashlib.sha256).digest()


def same(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two proofs."""
    return hmac.compare_digest(a, b)
