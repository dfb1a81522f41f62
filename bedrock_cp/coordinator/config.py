"""Cluster configuration held by the coordinators, and how UpdateConfig changes it.

:class:`ClusterConfig` holds the parameters a running cluster's Directors read
(sizes of the transaction system, nodes excluded from recruitment, when a
silent storage replica is replaced), each with a default so that a new cluster
works without any UpdateConfig. Raft timers are not here: each node reads its
own from its TOML file (``[timers]``), since they take effect only when the
node starts. :func:`apply_changes` validates a whole change set — names,
types, bounds — so a change is applied entirely or not at all.
"""

from __future__ import annotations

from typing import Final

import msgspec

from .limits import MAX_NODES, check_name

ConfigValue = int | str | list[str]


class ClusterConfig(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The cluster's parameters. Field names are the names UpdateConfig uses;
    the ``#:`` comments are the configuration reference's text."""

    #: Logs in a transaction system (one per node; fewer while nodes are down).
    desired_logs: int = 3
    #: Storage replicas of each key range (one per node).
    storage_replicas: int = 3
    #: Commit proxies in a transaction system.
    commit_proxies: int = 1
    #: Resolvers in a transaction system (each checks a range of the keys).
    resolvers: int = 1
    #: Nodes a Director must not recruit on (sorted, unique); what runs there
    #: moves away (``bedrock-cp exclude``).
    excluded_nodes: list[str] = msgspec.field(default_factory=list)
    #: Seconds a storage replica may stay silent before it is replaced by a new
    #: one on another node (filled from a healthy replica), then retired.
    storage_replacement_s: int = 30


# Integer parameters and their inclusive bounds.
INT_BOUNDS: Final[dict[str, tuple[int, int]]] = {
    "desired_logs": (1, 64),
    "storage_replicas": (1, 16),
    "commit_proxies": (1, 64),
    "resolvers": (1, 64),
    "storage_replacement_s": (1, 86_400),
}
LIST_PARAMS: Final = frozenset({"excluded_nodes"})

PARAMETERS: Final[frozenset[str]] = frozenset(INT_BOUNDS) | LIST_PARAMS
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
    return msgspec.structs.replace(config, **normalized)


def _check_one(name: str, value: ConfigValue) -> str | None:
    if name not in PARAMETERS:
        known = ", ".join(sorted(PARAMETERS))
        return f"unknown config parameter {name!r} (known: {known})"
    if name in INT_BOUNDS:
        # bool is an int subclass; a Python caller might pass one.
        if type(value) is not int:
            return f"config parameter {name!r} must be an integer"
        low, high = INT_BOUNDS[name]
        if not low <= value <= high:
            return f"config parameter {name!r} = {value} is outside {low}..{high}"
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"config parameter {name!r} must be a list of strings"
    if len(value) > MAX_NODES:
        return f"config parameter {name!r} has {len(value)} entries (at most {MAX_NODES})"
    for item in value:
        reason = check_name(f"an entry of config parameter {name!r}", item)
        if reason is not None:
            return reason
    return None
