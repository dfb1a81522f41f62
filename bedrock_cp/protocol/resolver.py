"""The resolver's interface: read-write conflict detection for one key range.

A commit proxy sends each batch of transactions to every resolver
(:class:`Resolve`, in ``prev_version`` order); the answer says, per
transaction, whether none of its reads (clipped to the resolver's range) was
written by a transaction admitted after its read version.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Body, Sender
from .layout import KeyRange


class ResolveTransaction(Body):
    read_version: int
    reads: list[KeyRange]
    writes: list[KeyRange]


# -- requests --------------------------------------------------------------------------


class Resolve(Body, tag="dp_resolve"):
    """Check a batch at ``version``; batches are resolved in ``prev_version`` order."""

    sender: ClassVar[Sender] = Sender.PEER

    worker: str
    epoch: int
    prev_version: int
    version: int
    transactions: list[ResolveTransaction]


ResolverRequest = Resolve

# -- replies ---------------------------------------------------------------------------


class Resolved(Body, tag="dp_resolved"):
    committed: list[bool]
