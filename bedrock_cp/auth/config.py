"""``[auth]``: where a node's or a client's credentials are.

The same table appears in a node's TOML config and in a ``cluster.toml``; it
names files, never holds a secret, so it may be shown in logs and status.

```toml
[auth]
mode = "tls"                      # "tls" (default) | "secret" | "none"
ca = "/etc/bedrock/ca.pem"        # tls: the cluster CA certificate
cert = "/etc/bedrock/node-1.pem"  # tls: this node's (or client's) certificate
key = "/etc/bedrock/node-1.key"   # tls: its private key (mode 0600)
secret = "/etc/bedrock/secret"    # secret, nodes: the cluster secret (0600)
tokens = "/etc/bedrock/tokens.toml"  # secret, nodes: the client tokens accepted
token = "/etc/bedrock/admin.token"   # secret, clients: this client's token (0600)
name = "admin"                       # secret, clients: the token's name
```
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Literal

import msgspec

Mode = Literal["tls", "secret", "none"]


class AuthError(ValueError):
    """Credentials are missing, unreadable, too open or malformed (the message
    names the file and the problem, never a secret)."""


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """See the module docstring. The default, ``tls`` with no files, fails closed."""

    #: ``tls`` (mutual TLS, the default), ``secret`` (a cluster secret and client
    #: tokens, HMAC-proved) or ``none`` (no authentication: anyone who can reach
    #: the node can change the cluster).
    mode: Mode = "tls"
    #: tls: the cluster CA certificate (PEM).
    ca: str = ""
    #: tls: this node's (or client's) certificate, issued by ``ca``.
    cert: str = ""
    #: tls: its private key (mode 0600).
    key: str = ""
    #: secret, nodes: the cluster secret file (mode 0600).
    secret: str = ""
    #: secret, nodes: the client tokens accepted (``name = "hex"`` lines, 0600).
    tokens: str = ""
    #: secret, clients: this client's token file (0600).
    token: str = ""
    #: secret, clients: the name its token is listed under.
    name: str = ""

    def resolved(self, base: Path) -> AuthConfig:
        """The same table with relative paths taken from ``base`` (the config's folder)."""

        def fix(p: str) -> str:
            return str(base / p) if p and not os.path.isabs(p) else p

        return msgspec.structs.replace(
            self,
            ca=fix(self.ca),
            cert=fix(self.cert),
            key=fix(self.key),
            secret=fix(self.secret),
            tokens=fix(self.tokens),
            token=fix(self.token),
        )

    def toml_lines(self) -> list[str]:
        """The ``[auth]`` table as TOML lines (only the fields that are set)."""
        import json

        lines = ["[auth]", f"mode = {json.dumps(self.mode)}"]
        for field in ("ca", "cert", "key", "secret", "tokens", "token", "name"):
            value = getattr(self, field)
            if value:
                lines.append(f"{field} = {json.dumps(value)}")
        return lines


def read_private(path: str, what: str) -> bytes:
    """The bytes of a private file; refuses a file others may read or write."""
    if not path:
        raise AuthError(f"auth.{what} is not set")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            raise AuthError(
                f"{path} ({what}) is readable by others (mode {mode:04o}): chmod 600 it"
            )
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise AuthError(f"{path} ({what}): no such file") from None
    except OSError as exc:
        raise AuthError(f"{path} ({what}): {exc.strerror}") from None


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (replacing it atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
