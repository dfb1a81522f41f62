"""Mutual TLS: the contexts both sides use, and the identity in a certificate.

Every certificate of a cluster is signed by the cluster's own CA and names its
holder with one URI in its subjectAltName: ``bedrock:<cluster>/node/<id>`` for
a node, ``bedrock:<cluster>/admin/<name>`` or ``bedrock:<cluster>/client/<name>``
for a client. Both sides require a certificate (``CERT_REQUIRED``), TLS 1.3
only, and trust only the cluster CA; host names are not checked (nodes move
between addresses), the URI is.
"""

from __future__ import annotations

import ssl
from typing import Any

from .config import AuthError
from .principal import Principal

_SCHEME = "bedrock:"


def identity_uri(cluster: str, principal: Principal) -> str:
    """The URI a certificate for ``principal`` of ``cluster`` carries."""
    who = str(principal.node_id) if principal.role == "node" else principal.name
    return f"{_SCHEME}{cluster}/{principal.role}/{who}"


def principal_of(cert: dict[str, Any] | None, cluster: str) -> Principal | None:
    """The principal a verified peer certificate names in ``cluster``, or None."""
    if not cert:
        return None
    found = [v for k, v in cert.get("subjectAltName", ()) if k == "URI"]
    if len(found) != 1 or not found[0].startswith(_SCHEME):
        return None
    rest = found[0][len(_SCHEME) :]
    parts = rest.rsplit("/", 2)
    if len(parts) != 3 or parts[0] != cluster or not parts[2]:
        return None
    _, role, who = parts
    if role == "node":
        if not who.isdigit() or int(who) < 1:
            return None
        return Principal.node(int(who))
    if role == "admin":
        return Principal.admin(who)
    if role == "client":
        return Principal.client(who)
    return None


def _context(purpose: ssl.Purpose, ca: str, cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(
        ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cafile=ca)
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise AuthError(f"TLS credentials {cert}, {key} (CA {ca}): {exc}") from None
    return ctx


def server_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    """What a node's listener uses: its certificate; clients must present one too."""
    return _context(ssl.Purpose.CLIENT_AUTH, ca, cert, key)


def client_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    """What a connecting node or client uses."""
    return _context(ssl.Purpose.SERVER_AUTH, ca, cert, key)
