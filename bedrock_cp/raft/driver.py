"""The Ready loop around one native :class:`~bedrock_cp_native.Consensus`.

The contract (etcd-raft's, kept by every driver in bedrock_cp):

1. **Persist** the Ready's snapshot, entries and hard state — fsync'd when
   ``must_sync`` — **BEFORE** any of its messages leave the node. A vote or an
   append acknowledgement must never be sent for state that a crash could lose.
   The native object enforces it: the messages exist only in what
   ``Consensus.persist`` returns.
2. **Send** the messages.
3. **Apply** the snapshot (if any), then the committed entries, in order.
4. **Advance** the node, then release confirmed reads: each may be served once
   the entries up to its index are applied.

:class:`RaftDriver` runs this synchronously (persisting inline); the asyncio
:class:`~bedrock_cp.raft.runner.RaftRunner` runs the same steps with the
persist on a WAL thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .._native import native


class StateMachine(Protocol):
    """What the driver applies committed entries to."""

    def apply(self, entry: native.Entry) -> None:
        """Apply one committed entry (called in log order, exactly once per incarnation)."""

    def restore(self, snapshot: native.Snapshot) -> None:
        """Replace the whole state with a snapshot received from the leader."""


Send = Callable[[int, bytes], None]
OnRead = Callable[[int, bytes], None]


class RaftDriver:
    """Owns one node; :meth:`handle_ready` runs one Ready through the contract."""

    __slots__ = ("consensus", "on_read", "readies", "send", "state_machine")

    def __init__(
        self,
        consensus: native.Consensus,
        send: Send,
        state_machine: StateMachine,
        on_read: OnRead | None = None,
    ) -> None:
        self.consensus = consensus
        self.send = send
        self.state_machine = state_machine
        self.on_read = on_read
        self.readies = 0

    def handle_ready(self) -> bool:
        """Process one Ready if there is one; return whether there was."""
        c = self.consensus
        if not c.has_ready():
            return False
        # 1. Persist; nothing below exists before it returns.
        out = c.persist(c.ready())
        # 2. Send.
        send = self.send
        for to, data in out.messages:
            send(to, data)
        # 3. Apply: a received snapshot replaces the state before later entries.
        snapshot = out.snapshot
        if snapshot is not None:
            self.state_machine.restore(snapshot)
        apply = self.state_machine.apply
        for entry in out.committed_entries:
            apply(entry)
        # 4. Advance, then release confirmed reads.
        c.advance(out)
        if self.on_read is not None:
            for index, ctx in out.read_states:
                self.on_read(index, ctx)
        self.readies += 1
        return True
