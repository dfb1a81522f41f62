"""The base of every message body, and who may send a request.

Every request, response, layout type and record derives from :class:`Body`, so
they all share one set of msgspec options: ``array_like`` (a body on the wire is
a msgpack array ``[tag, field, ...]``, no field names), ``frozen`` and
``gc=False``. A body that travels alone in a union names its ``tag`` in its own
class statement (tags are stable: they are on the wire and in stored data); a
type that only appears nested inside another (a ``WorkerRef``, a ``Mutation``)
has no tag and encodes as a bare array.

Every request type also declares, as the class variable ``sender``, the role
allowed to send it (:class:`Sender`); :data:`~bedrock_cp.protocol.codec.SENDERS`
lists them all for an authorization check.
"""

from __future__ import annotations

from enum import StrEnum
from typing import dataclass_transform

import msgspec


# frozen_default tells type checkers that subclasses are frozen too (msgspec
# inherits the option at run time; dataclass_transform alone would not say so).
@dataclass_transform(field_specifiers=(msgspec.field,), frozen_default=True)
class Body(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A message body or one of its parts: positional, immutable, untracked by the GC."""


class Sender(StrEnum):
    """Who may send a request (authenticated by the handshake).

    Declared on every request type as ``sender``; the node checks it for every
    request before any handler runs (``bedrock_cp.node.authorize``).
    """

    ANY = "any"
    """Any connection that passed the handshake: liveness and status probes."""
    PEER = "peer"
    """A cluster node's own components: replication and the pipeline between
    data-plane workers (a commit proxy pushing to logs and asking the sequencer
    and resolvers, storage pulling from logs), and reads of a node's workers."""
    DIRECTOR = "director"
    """The current epoch's Director: worker creation and removal, locks, roles, the
    stored layout. Every such request carries the Director's ``epoch``: it must
    come from a cluster node and name the epoch the coordinators issued last."""
    ADMIN = "admin"
    """An operator: membership and configuration."""
    CLIENT = "client"
    """A client of the cluster: transactions, directory reads, registering services
    (a node's Gateway registering its own node's, and only its own)."""
