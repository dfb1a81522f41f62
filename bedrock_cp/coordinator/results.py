"""What applying one Raft entry to the coordinators' state produced.

The result is part of the replicated outcome: every coordinator computes the same
one for the same index, the leader sends it to the client that proposed the
command, and the session table caches it so a retried write gets it again.
"""

from __future__ import annotations

import msgspec


class Applied(msgspec.Struct, tag="applied", array_like=True, frozen=True, gc=False):
    """The command at ``index`` took effect; ``value`` is its result, if it has one."""

    index: int
    value: int | None


class Rejected(msgspec.Struct, tag="rejected", array_like=True, frozen=True, gc=False):
    """The command at ``index`` changed nothing (but the index is consumed), because ``reason``."""

    index: int
    reason: str


ApplyResult = Applied | Rejected
