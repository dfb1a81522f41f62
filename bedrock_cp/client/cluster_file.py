"""``cluster.toml``: where a cluster's coordinators are, as written by ``cluster up``.

```toml
cluster = "bedrock"
coordinators = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]

[[nodes]]
id = 1
address = "127.0.0.1:7001"
config = "/tmp/c/1.toml"
log = "/tmp/c/1.log"
pid = 4242

[auth]                         # the client's credentials (files, never a secret)
mode = "tls"
ca = "/tmp/c/certs/ca.pem"
cert = "/tmp/c/certs/admin.pem"
key = "/tmp/c/certs/admin.key"
```

Clients accept either such a file or a comma-separated ``host:port`` list (which
carries no credentials: a cluster with authentication on refuses it).
Relative paths in ``[auth]`` are taken from the file's folder.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import msgspec

from ..auth import AuthConfig
from ..node.config import ConfigError, parse_address


class NodeEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One node process of a local cluster."""

    id: int
    address: str
    config: str = ""
    log: str = ""
    pid: int = 0


class ClusterFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The contents of ``cluster.toml``."""

    cluster: str
    coordinators: list[str]
    nodes: list[NodeEntry] = msgspec.field(default_factory=list)
    #: How clients authenticate (None: they present no credentials).
    auth: AuthConfig | None = None

    def dump(self) -> str:
        lines = [
            f"cluster = {json.dumps(self.cluster)}",
            f"coordinators = {json.dumps(self.coordinators)}",
        ]
        for n in self.nodes:
            lines += [
                "",
                "[[nodes]]",
                f"id = {n.id}",
                f"address = {json.dumps(n.address)}",
                f"config = {json.dumps(n.config)}",
                f"log = {json.dumps(n.log)}",
                f"pid = {n.pid}",
            ]
        if self.auth is not None:
            lines += ["", *self.auth.toml_lines()]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.dump())
        tmp.replace(path)


def read_cluster_file(path: Path) -> ClusterFile:
    try:
        raw = tomllib.loads(path.read_text())
        cf = msgspec.convert(raw, ClusterFile)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not cf.coordinators:
        raise ConfigError(f"{path}: lists no coordinators")
    for addr in cf.coordinators:
        parse_address(addr, what=f"{path}: coordinators")
    if cf.auth is not None:
        cf.auth = cf.auth.resolved(path.resolve().parent)
    return cf


def resolve_cluster(cluster: str | Path) -> ClusterFile:
    """A cluster.toml path (or a directory holding one), or ``host:port,host:port``."""
    text = str(cluster)
    path = Path(text)
    if path.is_dir():
        path = path / "cluster.toml"
    if path.suffix == ".toml" or path.exists():
        return read_cluster_file(path)
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    if not addresses:
        raise ConfigError("--cluster is empty: give a cluster.toml path or host:port,host:port")
    for addr in addresses:
        parse_address(addr, what="--cluster")
    return ClusterFile(cluster="", coordinators=addresses)
