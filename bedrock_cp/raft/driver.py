"""The Ready loop around one native :class:`RaftNode`.

The contract (etcd-raft's, kept by every driver in bedrock_cp):

1. **Persist** the Ready's snapshot, entries and hard state — fsync'd when
   ``must_sync`` — **BEFORE** any of its messages leave the node. A vote or an
   append acknowledgement must never be sent for state that a crash could lose.
2. **Send** the messages.
3. **Apply** the snapshot (if any), then the committed entries, in order; answer
   confirmed reads.
4. **Advance** the node, telling it what was persisted and applied.
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
    """Owns one node and its WAL; :meth:`handle_ready` runs one Ready through the contract."""

    __slots__ = ("node", "on_read", "readies", "send", "state_machine", "wal")

    def __init__(
        self,
        node: native.RaftNode,
        wal: native.Wal,
        send: Send,
        state_machine: StateMachine,
        on_read: OnRead | None = None,
    ) -> None:
        self.node = node
        self.wal = wal
        self.send = send
        self.state_machine = state_machine
        self.on_read = on_read
        self.readies = 0

    def handle_ready(self) -> bool:
        """Process one Ready if there is one; return whether there was."""
        node = self.node
        if not node.has_ready():
            return False
        rd = node.ready()
        # 1. Persist first: nothing below may leave the node before this returns.
        self.wal.save(rd)
        # 2. Send.
        send = self.send
        for to, data in rd.messages:
            send(to, data)
        # 3. Apply: a received snapshot replaces the state before later entries.
        snapshot = rd.snapshot
        if snapshot is not None:
            self.state_machine.restore(snapshot)
        apply = self.state_machine.apply
        for entry in rd.committed_entries:
            apply(entry)
        if self.on_read is not None:
            for index, ctx in rd.read_states:
                self.on_read(index, ctx)
        # 4. Advance.
        node.advance(rd)
        self.readies += 1
        return True
