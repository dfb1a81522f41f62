"""The commands of the coordinators' state machine: exactly what goes into the Raft log.

A client write becomes a :class:`Proposal` — a session envelope ``(client_id, seq)``
around one :data:`Command` — encoded to msgpack by :func:`encode_proposal` and
proposed to Raft. Every coordinator decodes the same committed bytes with
:func:`decode_proposal` and applies them (:mod:`.state`), so these types are a
persistent format: tags are short and stable, fields are positional
(``array_like``), and new fields may only be appended with defaults.

Commands carry everything their effect depends on (e.g. ``at_ms``, the leader's
clock when it proposed), so applying one is a pure function of the state.
"""

from __future__ import annotations

import msgspec

from ..protocol.records import RetiredWorker, Service


class RegisterNode(msgspec.Struct, tag="reg_node", array_like=True, frozen=True, gc=False):
    """Declare everything ``node`` offers; replaces all it registered before, atomically.

    Every service must name ``node`` as its owner. A service id owned by another
    node moves to this one (the only way a service changes owner).
    """

    node: str
    address: str
    capabilities: list[str]
    services: list[Service]
    at_ms: int


class RegisterServices(msgspec.Struct, tag="reg_svc", array_like=True, frozen=True, gc=False):
    """Add or update services; an id owned by another node is rejected."""

    services: list[Service]
    at_ms: int


class DeregisterServices(msgspec.Struct, tag="dereg_svc", array_like=True, frozen=True, gc=False):
    """Remove services by id; ids not in the directory are ignored (idempotent delete)."""

    service_ids: list[str]


class UpdateConfig(msgspec.Struct, tag="cfg", array_like=True, frozen=True, gc=False):
    """Change cluster parameters by name; see :mod:`.config` for names, types and bounds."""

    changes: dict[str, int | str | list[str]]


class SetCoordinator(msgspec.Struct, tag="set_coord", array_like=True, frozen=True, gc=False):
    """Record where coordinator ``id`` listens (Raft changes voting membership apart)."""

    id: int
    address: str


class DropCoordinator(msgspec.Struct, tag="drop_coord", array_like=True, frozen=True, gc=False):
    """Forget coordinator ``id``'s address."""

    id: int


class BeginEpoch(msgspec.Struct, tag="epoch", array_like=True, frozen=True, gc=False):
    """Hand the next epoch to a Director on ``node``; the result is the new epoch."""

    node: str


class StoreLayout(msgspec.Struct, tag="layout", array_like=True, frozen=True, gc=False):
    """Persist the transaction system layout; only the current epoch's Director may."""

    epoch: int
    layout: bytes


class RetireWorkers(msgspec.Struct, tag="retire", array_like=True, frozen=True, gc=False):
    """The Director of ``epoch`` retires these persistent workers (an old log
    generation, a replaced storage replica): recorded before any of their files
    is removed, and kept until :class:`ForgetRetired` says they are gone."""

    epoch: int
    workers: list[RetiredWorker]


class ForgetRetired(msgspec.Struct, tag="forget_retired", array_like=True, frozen=True, gc=False):
    """The retired workers ``ids`` are removed from their nodes: forget them."""

    epoch: int
    ids: list[str]


Command = (
    RegisterNode
    | RegisterServices
    | DeregisterServices
    | UpdateConfig
    | SetCoordinator
    | DropCoordinator
    | BeginEpoch
    | StoreLayout
    | RetireWorkers
    | ForgetRetired
)
"""Every command the coordinators' state machine knows."""


class Proposal(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The envelope proposed to Raft.

    ``client_id == 0`` means no session (the leader's own commands). Otherwise
    ``seq`` numbers that client's writes from 1 up; a retried ``seq`` is answered
    from the session table instead of being applied again.
    """

    client_id: int
    seq: int
    command: Command


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Proposal)


def encode_proposal(proposal: Proposal) -> bytes:
    """The bytes to propose to Raft."""
    return _encoder.encode(proposal)


def decode_proposal(data: bytes) -> Proposal:
    """Decode committed bytes strictly.

    Raises :class:`msgspec.DecodeError` (or its subclass ``ValidationError``) on
    anything that is not a well-typed :class:`Proposal`.
    """
    return _decoder.decode(data)
