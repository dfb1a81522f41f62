"""The worker kinds this build can run: ``kind -> factory``.

The node offers the kinds its configuration lists (``capabilities``), taken
from this registry. It is empty until the data-plane workers are wired in
(``log``, ``storage``); a node whose configuration lists a kind missing here
refuses to start with an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping

from .foreman import RoleFactory, WorkerFactory


def worker_factories() -> dict[str, WorkerFactory]:
    """The persistent worker kinds of this build."""
    return {}


def role_factories() -> dict[str, RoleFactory]:
    """The transaction roles (sequencer, commit proxy, resolver) of this build."""
    return {}


def offered(
    capabilities: list[str], registry: Mapping[str, WorkerFactory]
) -> dict[str, WorkerFactory]:
    """The factories of the kinds listed in ``capabilities``.

    Raises KeyError naming a listed kind the registry does not have.
    """
    missing = sorted(set(capabilities) - set(registry))
    if missing:
        known = ", ".join(sorted(registry)) or "none"
        raise KeyError(
            f"capabilities {', '.join(map(repr, missing))} are not worker kinds of this build "
            f"(known: {known})"
        )
    return {kind: registry[kind] for kind in capabilities}
