"""Node configuration: TOML decoded into msgspec types, strictly.

An unknown key is an error that names it (a typo must not silently fall back
to a default), and so is a value of the wrong type. Times are in milliseconds.

```toml
id = 1
cluster = "bedrock"
data_dir = "/var/lib/bedrock/1"
listen = "127.0.0.1:7001"   # where this node accepts connections
advertise = ""              # where others reach it (default: listen; needed when
                            # listen is a wildcard such as 0.0.0.0:7001)
fsync = true
snapshot_every = 10000      # entries applied between log compactions, at least
snapshot_bytes = 67108864   # or bytes of entries applied, whatever the count
capabilities = ["log", "storage"]   # worker kinds this node's Foreman offers
idempotency_retention_ms = 60000    # how long commit proxies here keep idempotency records
storage_flush_ms = 5000     # how long storage here keeps committed versions in memory only
log_generation_bytes = 4194304      # a log's WAL generation is closed (and can go) at this size

[coordinators]        # the founding members: id -> host:port
1 = "127.0.0.1:7001"
2 = "127.0.0.1:7002"
3 = "127.0.0.1:7003"

[timers]
tick_ms = 10
heartbeat_ms = 50
election_timeout_ms = 200   # randomized in [200, 400)

[auth]                      # see bedrock_cp.auth.config; relative paths are
mode = "tls"                # taken from this file's folder
ca = "certs/ca.pem"
cert = "certs/node-1.pem"
key = "certs/node-1.key"
```

Authentication is on unless ``auth.mode = "none"`` says otherwise: a node
without credentials for its mode refuses to start.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import msgspec

from ..auth import AuthConfig
from ..dataplane.log import GENERATION_BYTES
from ..dataplane.storage import WINDOW_SECONDS
from ..protocol import idempotency

#: Hosts that bind every interface: fine to listen on, never to be dialed.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", "*"})


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and the key."""


class Timers(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Raft timing. Each election timeout is randomized in [election, 2 x election)."""

    #: How often the Raft core ticks.
    tick_ms: int = 10
    #: How often a leader sends heartbeats (a multiple of ``tick_ms``). A
    #: follower considers a silent leader lost after a window learned from the
    #: gaps between its heartbeats: about two heartbeat intervals on a quiet host,
    #: wider (up to twice ``election_timeout_ms``) when they arrive late and
    #: irregularly (see the operations guide, failure detection).
    heartbeat_ms: int = 50
    #: A follower that knows no leader starts an election after this long
    #: (randomized up to twice as long); twice this bounds the window of
    #: silence after which a follower gives up on its leader, and how long a
    #: leader that hears no majority keeps leading. A follower whose connection
    #: to the leader breaks starts an election at once.
    election_timeout_ms: int = 200

    def validate(self) -> None:
        if self.tick_ms < 1:
            raise ConfigError(f"timers.tick_ms must be >= 1, not {self.tick_ms}")
        if self.heartbeat_ms < self.tick_ms:
            raise ConfigError(
                f"timers.heartbeat_ms ({self.heartbeat_ms}) must be >= tick_ms ({self.tick_ms})"
            )
        if self.election_timeout_ms <= self.heartbeat_ms:
            raise ConfigError(
                f"timers.election_timeout_ms ({self.election_timeout_ms}) must exceed "
                f"heartbeat_ms ({self.heartbeat_ms})"
            )

    @property
    def heartbeat_ticks(self) -> int:
        return max(1, round(self.heartbeat_ms / self.tick_ms))

    @property
    def election_ticks(self) -> int:
        return max(self.heartbeat_ticks + 1, round(self.election_timeout_ms / self.tick_ms))


class NodeConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Everything one node process needs."""

    #: This node's id (a positive integer, unique in the cluster; its name is
    #: the id as a string).
    id: int
    #: Where the node keeps its WAL, state and workers' data (created 0700).
    data_dir: str
    #: Where this node accepts connections (``host:port``; ``0.0.0.0:7001`` binds
    #: every interface).
    listen: str
    #: The founding coordinators, id -> ``host:port`` (their advertised
    #: addresses); later membership changes come from the replicated state.
    coordinators: dict[str, str]
    #: Where the other nodes and clients reach this node: the address it
    #: registers, and the one a leader writes into the coordinator list.
    #: Empty: ``listen``, which must then not be a wildcard.
    advertise: str = ""
    #: The cluster's name: a connection from another cluster is refused.
    cluster: str = "bedrock"
    #: Start as a non-voting member of a running cluster, to be added with
    #: ``bedrock-cp coordinators add`` (the node need not be in ``coordinators``).
    join: bool = False
    #: Make every acknowledged write durable before answering (``false`` only for
    #: tests: a power loss can lose acknowledged writes).
    fsync: bool = True
    #: Entries applied between two snapshots of the coordinators' state (the log
    #: before a snapshot is removed), at least: a snapshot is taken only once the
    #: entries since the last one also add up to half its size (each snapshot
    #: encodes the whole state, so a large directory is not encoded again every
    #: few thousand writes).
    snapshot_every: int = 10_000
    #: Or bytes of entries applied (their data plus 32 bytes each), whatever their
    #: count and the state's size.
    snapshot_bytes: int = 64 * 1024 * 1024
    #: Raft timing, ``[timers]``.
    timers: Timers = Timers()
    #: ``debug``, ``info``, ``warning`` or ``error``.
    log_level: str = "info"
    #: Where to serve Prometheus metrics (``host:port``, ``GET /metrics``, no
    #: authentication: bind it where only your scraper reaches); empty: nowhere.
    metrics_listen: str = ""
    #: Worker kinds this node's Foreman offers (empty: it hosts no workers, but
    #: its Gateway still registers it and follows the layout).
    capabilities: list[str] = []
    #: Where this node's credentials are (default: TLS, which needs files).
    auth: AuthConfig = AuthConfig()
    #: How long the commit proxies this node runs keep idempotency records (the
    #: records that let a retry learn that an earlier attempt committed).
    idempotency_retention_ms: int = int(idempotency.RETENTION_SECONDS * 1000)
    #: How long the storage replicas here keep a committed version in memory
    #: before writing it to their base (at most the MVCC window; shorter: a
    #: restart replays less, reads older than this go to the base).
    storage_flush_ms: int = int(WINDOW_SECONDS * 1000)
    #: The size at which a log here closes its WAL generation: a closed
    #: generation is removed once every replica has made it durable.
    log_generation_bytes: int = GENERATION_BYTES

    def validate(self) -> None:
        if self.id < 1:
            raise ConfigError(f"id must be a positive integer, not {self.id}")
        if not self.cluster or len(self.cluster) > 128:
            raise ConfigError("cluster must be a non-empty name of at most 128 characters")
        listen_host, _ = parse_address(self.listen, what="listen")
        if self.advertise:
            host, _ = parse_address(self.advertise, what="advertise")
            if host in WILDCARD_HOSTS:
                raise ConfigError(
                    f"advertise: {self.advertise!r} is not an address others can reach"
                )
        elif listen_host in WILDCARD_HOSTS:
            raise ConfigError(
                f"listen = {self.listen!r} binds every interface, which no peer can dial: "
                "set advertise to the host:port others reach this node at"
            )
        for key, addr in self.coordinators.items():
            coordinator_id(key)
            parse_address(addr, what=f"coordinators.{key}")
        if not self.join and str(self.id) not in self.coordinators:
            raise ConfigError(
                f"node {self.id} is not listed in [coordinators]; "
                "list it, or set join = true to be added to a running cluster"
            )
        if self.metrics_listen:
            parse_address(self.metrics_listen, what="metrics_listen")
        if self.snapshot_every < 1:
            raise ConfigError(f"snapshot_every must be >= 1, not {self.snapshot_every}")
        if self.snapshot_bytes < 1:
            raise ConfigError(f"snapshot_bytes must be >= 1, not {self.snapshot_bytes}")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"log_level must be debug, info, warning or error, not {self.log_level!r}"
            )
        for kind in self.capabilities:
            if not kind or len(kind) > 64:
                raise ConfigError(f"capabilities: {kind!r} is not a worker kind name")
        if len(set(self.capabilities)) != len(self.capabilities):
            raise ConfigError("capabilities: a kind is listed twice")
        least = int(idempotency.MIN_RETENTION_SECONDS * 1000)
        if self.idempotency_retention_ms < least:
            raise ConfigError(
                f"idempotency_retention_ms must be >= {least} (clients trust a record "
                f"lookup for {idempotency.LOOKUP_WINDOW_SECONDS:g} s), "
                f"not {self.idempotency_retention_ms}"
            )
        window = int(WINDOW_SECONDS * 1000)
        if not 1 <= self.storage_flush_ms <= window:
            raise ConfigError(
                f"storage_flush_ms must be in [1, {window}] (the MVCC window), "
                f"not {self.storage_flush_ms}"
            )
        if self.log_generation_bytes < 1:
            raise ConfigError(f"log_generation_bytes must be >= 1, not {self.log_generation_bytes}")
        self.timers.validate()

    @property
    def advertised(self) -> str:
        """The address others reach this node at."""
        return self.advertise or self.listen

    def coordinator_map(self) -> dict[int, str]:
        return {coordinator_id(k): v for k, v in self.coordinators.items()}


def coordinator_id(key: str) -> int:
    try:
        value = int(key)
    except ValueError:
        raise ConfigError(f"coordinator id {key!r} is not an integer") from None
    if value < 1:
        raise ConfigError(f"coordinator id {key!r} must be positive")
    return value


def parse_address(address: str, *, what: str = "address") -> tuple[str, int]:
    """Split ``host:port``; raise ConfigError naming ``what`` if it is not one."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{what}: {address!r} is not host:port")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what}: port {port} is out of range")
    return host, port


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate a node's TOML file."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    cfg = config_from_dict(raw, source=str(p))
    return msgspec.structs.replace(cfg, auth=cfg.auth.resolved(p.resolve().parent))


def config_from_dict(raw: dict[str, object], *, source: str = "config") -> NodeConfig:
    try:
        cfg = msgspec.convert(raw, NodeConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def dump_config(cfg: NodeConfig) -> str:
    """Render a config as TOML (what `cluster up` writes for each node)."""
    lines = [
        f"id = {cfg.id}",
        f"cluster = {json.dumps(cfg.cluster)}",
        f"data_dir = {json.dumps(cfg.data_dir)}",
        f"listen = {json.dumps(cfg.listen)}",
        *([f"advertise = {json.dumps(cfg.advertise)}"] if cfg.advertise else []),
        f"join = {'true' if cfg.join else 'false'}",
        f"fsync = {'true' if cfg.fsync else 'false'}",
        f"snapshot_every = {cfg.snapshot_every}",
        f"snapshot_bytes = {cfg.snapshot_bytes}",
        f'log_level = "{cfg.log_level}"',
        *([f"metrics_listen = {json.dumps(cfg.metrics_listen)}"] if cfg.metrics_listen else []),
        f"capabilities = {json.dumps(list(cfg.capabilities))}",
        f"idempotency_retention_ms = {cfg.idempotency_retention_ms}",
        f"storage_flush_ms = {cfg.storage_flush_ms}",
        f"log_generation_bytes = {cfg.log_generation_bytes}",
        "",
        "[coordinators]",
        *(
            f"{json.dumps(k)} = {json.dumps(v)}"
            for k, v in sorted(cfg.coordinators.items(), key=lambda kv: int(kv[0]))
        ),
        "",
        "[timers]",
        f"tick_ms = {cfg.timers.tick_ms}",
        f"heartbeat_ms = {cfg.timers.heartbeat_ms}",
        f"election_timeout_ms = {cfg.timers.election_timeout_ms}",
        "",
        *cfg.auth.toml_lines(),
        "",
    ]
    return "\n".join(lines)
