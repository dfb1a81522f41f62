"""Cluster configuration held by the coordinators, and how UpdateConfig changes it.

:class:`ClusterConfig` holds the cluster name and the parameters every part reads
(sizes of the transaction system, Raft timers, nodes excluded from recruitment),
each with a default so that a new cluster works without any UpdateConfig.
:func:`apply_changes` validates a whole change set — names, types, bounds, and the
relations between timers — against the config it would produce, so a change is
applied entirely or not at all.
"""

from __future__ import annotations

from typing import Final

import msgspec

from .limits import MAX_NODES, check_name

ConfigValue = int | str | list[str]


class ClusterConfig(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The cluster's parameters. Field names are the names UpdateConfig uses."""

    cluster_name: str = "bedrock"
    desired_logs: int = 3
    storage_replicas: int = 3
    commit_proxies: int = 1
    resolvers: int = 1
    tick_ms: int = 10
    heartbeat_ms: int = 50
    election_timeout_min_ms: int = 200
    election_timeout_max_ms: int = 400
    excluded_nodes: list[str] = msgspec.field(default_factory=list)
    """Nodes a Director must not recruit on (sorted, unique)."""
    storage_replacement_s: int = 30
    """A storage replica that does not answer for this long is replaced by a new
    one on another node (filled from a healthy replica), then retired."""


# Integer parameters and their inclusive bounds.
_INT_BOUNDS: Final[dict[str, tuple[int, int]]] = {
    "desired_logs": (1, 64),
    "storage_replicas": (1, 16),
    "commit_proxies": (1, 64),
    "resolvers": (1, 64),
    "tick_ms": (1, 10_000),
    "heartbeat_ms": (1, 60_000),
    "election_timeout_min_ms": (1, 600_000),
    "election_timeout_max_ms": (1, 600_000),
    "storage_replacement_s": (1, 86_400),
}
_STR_PARAMS: Final = frozenset({"cluster_name"})
_LIST_PARAMS: Final = frozenset({"excluded_nodes"})

PARAMETERS: Final[frozenset[str]] = frozenset(_INT_BOUNDS) | _STR_PARAMS | _LIST_PARAMS
"""Every name UpdateConfig accepts."""


def apply_changes(config: ClusterConfig, changes: dict[str, ConfigValue]) -> ClusterConfig | str:
    """The config after ``changes``, or the reason they are rejected."""
    # Sorted, so the reason for a set with several problems is the same everywhere.
    for name in sorted(changes):
        reason = _check_one(name, changes[name])
        if reason is not None:
            return reason
    normalized: dict[str, ConfigValue] = {
        name: sorted(set(value)) if isinstance(value, list) else value
        for name, value in changes.items()
    }
    updated = msgspec.structs.replace(config, **normalized)
    return _check_relations(updated) or updated


def _check_one(name: str, value: ConfigValue) -> str | None:
    if name not in PARAMETERS:
        return f"unknown config parameter {name!r}"
    if name in _INT_BOUNDS:
        # bool is an int subclass; a Python caller might pass one.
        if type(value) is not int:
            return f"config parameter {name!r} must be an integer"
        low, high = _INT_BOUNDS[name]
        if not low <= value <= high:
            return f"config parameter {name!r} = {value} is outside {low}..{high}"
        return None
    if name in _STR_PARAMS:
        if not isinstance(value, str):
            return f"config parameter {name!r} must be a string"
        return check_name(f"config parameter {name!r}", value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"config parameter {name!r} must be a list of strings"
    if len(value) > MAX_NODES:
        return f"config parameter {name!r} has {len(value)} entries (at most {MAX_NODES})"
    for item in value:
        reason = check_name(f"an entry of config parameter {name!r}", item)
        if reason is not None:
            return reason
    return None


def _check_relations(c: ClusterConfig) -> str | None:
    # The Raft driver needs: a tick fits in a heartbeat, a heartbeat well inside an
    # election timeout, and a non-empty range to randomize timeouts in.
    if c.tick_ms > c.heartbeat_ms:
        return f"tick_ms ({c.tick_ms}) must be <= heartbeat_ms ({c.heartbeat_ms})"
    if c.heartbeat_ms >= c.election_timeout_min_ms:
        return (
            f"heartbeat_ms ({c.heartbeat_ms}) must be < "
            f"election_timeout_min_ms ({c.election_timeout_min_ms})"
        )
    if c.election_timeout_min_ms >= c.election_timeout_max_ms:
        return (
            f"election_timeout_min_ms ({c.election_timeout_min_ms}) must be < "
            f"election_timeout_max_ms ({c.election_timeout_max_ms})"
        )
    return None
