"""Credentials loaded from an :class:`~.config.AuthConfig`, ready for the transport.

:class:`AcceptorAuth` is what a node's listener accepts; :class:`ConnectorAuth`
is how a node (its peer links, its calls to other nodes) or a client proves
itself. Loading fails closed: a mode that needs credentials and does not find
them raises :class:`~.config.AuthError` naming the missing file. Key material is
never part of a ``repr``, a log line or an error.

A tokens file (``auth.tokens`` of a node, secret mode) lists the clients a node
accepts, one table per token name:

```toml
[admin]
role = "admin"      # "admin" (membership, configuration) or "client"
token = "..."       # the token itself (the file is 0600, like the secret)
```
"""

from __future__ import annotations

import ssl
import tomllib
from dataclasses import dataclass, field
from typing import Literal

from . import tls
from .config import AuthConfig, AuthError, Mode, read_private
from .principal import Principal
from .proof import derive_key

#: How a connector authenticates, as its Hello says.
Method = Literal["tls", "secret", "token", "none"]


@dataclass(frozen=True)
class AcceptorAuth:
    """What a node's listener accepts (see the module docstring)."""

    mode: Mode
    cluster: str
    ssl: ssl.SSLContext | None = field(default=None, repr=False)
    node_key: bytes | None = field(default=None, repr=False)
    tokens: dict[str, tuple[Principal, bytes]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ConnectorAuth:
    """How one side proves itself when it connects."""

    method: Method
    ssl: ssl.SSLContext | None = field(default=None, repr=False)
    key: bytes = field(default=b"", repr=False)
    name: str = ""

    @property
    def mode(self) -> Mode:
        return "tls" if self.method == "tls" else "none" if self.method == "none" else "secret"


#: No authentication (``auth.mode = "none"``).
NO_AUTH = ConnectorAuth("none")


def load_acceptor(cfg: AuthConfig, cluster: str) -> AcceptorAuth:
    """What a node with ``cfg`` accepts; raises AuthError when credentials are missing."""
    if cfg.mode == "none":
        return AcceptorAuth("none", cluster)
    if cfg.mode == "tls":
        _need(cfg, "ca", "cert", "key")
        read_private(cfg.key, "key")  # refuse a key file others can read
        return AcceptorAuth("tls", cluster, ssl=tls.server_context(cfg.ca, cfg.cert, cfg.key))
    _need(cfg, "secret")
    key = derive_key(read_private(cfg.secret, "secret"))
    tokens = load_tokens(cfg.tokens) if cfg.tokens else {}
    return AcceptorAuth("secret", cluster, node_key=key, tokens=tokens)


def load_connector(cfg: AuthConfig, *, node: bool) -> ConnectorAuth:
    """How a node (``node``) or a client with ``cfg`` connects; raises AuthError."""
    if cfg.mode == "none":
        return NO_AUTH
    if cfg.mode == "tls":
        _need(cfg, "ca", "cert", "key")
        read_private(cfg.key, "key")
        return ConnectorAuth("tls", ssl=tls.client_context(cfg.ca, cfg.cert, cfg.key))
    if node:
        _need(cfg, "secret")
        return ConnectorAuth("secret", key=derive_key(read_private(cfg.secret, "secret")))
    _need(cfg, "token", "name")
    return ConnectorAuth("token", key=derive_key(read_private(cfg.token, "token")), name=cfg.name)


def load_tokens(path: str) -> dict[str, tuple[Principal, bytes]]:
    """The tokens file (see the module docstring): name -> (principal, key)."""
    try:
        raw = tomllib.loads(read_private(path, "tokens").decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AuthError(f"{path} (tokens): not valid TOML: {exc}") from None
    out: dict[str, tuple[Principal, bytes]] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or set(entry) != {"role", "token"}:
            raise AuthError(f"{path} (tokens): [{name}] needs exactly role and token")
        role, token = entry["role"], entry["token"]
        if role not in ("admin", "client") or not isinstance(token, str) or len(token) < 16:
            raise AuthError(
                f"{path} (tokens): [{name}] role must be admin or client and the token "
                "at least 16 characters"
            )
        principal = Principal.admin(name) if role == "admin" else Principal.client(name)
        out[name] = (principal, derive_key(token.encode()))
    return out


def _need(cfg: AuthConfig, *fields: str) -> None:
    missing = [f for f in fields if not getattr(cfg, f)]
    if missing:
        raise AuthError(
            f'auth.mode = "{cfg.mode}" needs auth.{", auth.".join(missing)}: create credentials '
            'with `bedrock-cp certs init DIR`, or set auth.mode = "none" to run without '
            "authentication"
        )
