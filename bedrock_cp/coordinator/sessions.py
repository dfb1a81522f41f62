"""Client sessions: exactly-once application of retried writes.

A client numbers its writes ``seq = 1, 2, 3, ...`` under its ``client_id`` and
retries a write with the same ``seq`` until it gets an answer. The table keeps, per
client, the last ``seq`` applied and its result: a retry of that ``seq`` gets the
cached result (even if the retry was committed at a later index), an older ``seq``
is rejected as stale, and neither is applied again.

Eviction: the table keeps at most ``capacity`` clients; when a new client would
exceed it, the client whose last activity (the Raft index of its last proposal,
applied or answered from the cache) is oldest is forgotten. A forgotten client's
next write is applied as new, so a write still being retried after ~capacity other
clients became active may apply twice; clients that idle that long should take a
new ``client_id``. Eviction depends only on applied indexes, so every coordinator
evicts the same clients (I2).
"""

from __future__ import annotations

import msgspec

from .limits import MAX_SESSIONS
from .results import ApplyResult, Rejected

STALE_SEQ = "stale request seq"


class Session(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One client's last applied write and when it was last active."""

    client_id: int
    last_seq: int
    result: ApplyResult
    """The result of ``last_seq`` (its index is where it was first applied)."""
    active_index: int
    """Raft index of this client's last proposal; eviction order."""


class SessionTable:
    """``client_id -> Session``, ordered from least to most recently active."""

    __slots__ = ("_sessions", "capacity")

    def __init__(self, capacity: int = MAX_SESSIONS) -> None:
        if capacity < 1:
            raise ValueError(f"session capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        # Insertion order is activity order: a touched session is moved to the end.
        self._sessions: dict[int, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, client_id: int) -> Session | None:
        """The session of ``client_id``, if it is kept."""
        return self._sessions.get(client_id)

    def replay(self, client_id: int, seq: int, index: int) -> ApplyResult | None:
        """The answer to a write already seen (``seq <= last``), or None if it is new.

        A replay counts as activity of the client.
        """
        session = self._sessions.get(client_id)
        if session is None or seq > session.last_seq:
            return None
        self._put(msgspec.structs.replace(session, active_index=index))
        if seq == session.last_seq:
            return session.result
        return Rejected(index, f"{STALE_SEQ} {seq} (last applied {session.last_seq})")

    def record(self, client_id: int, seq: int, index: int, result: ApplyResult) -> None:
        """Remember that ``seq`` was applied at ``index`` with ``result``; evict if full."""
        self._put(Session(client_id, seq, result, index))
        while len(self._sessions) > self.capacity:
            del self._sessions[next(iter(self._sessions))]

    def entries(self) -> list[Session]:
        """Every session, least recently active first (canonical: sorted by activity)."""
        return list(self._sessions.values())

    @classmethod
    def from_entries(cls, capacity: int, entries: list[Session]) -> SessionTable:
        """Rebuild a table from :meth:`entries`; raises ValueError if they are inconsistent."""
        table = cls(capacity)
        if len(entries) > capacity:
            raise ValueError(f"{len(entries)} sessions exceed the capacity {capacity}")
        last = 0
        for session in entries:
            if session.client_id in table._sessions:
                raise ValueError(f"client {session.client_id} has two sessions")
            if session.active_index <= last:
                raise ValueError("sessions are not in increasing activity order")
            last = session.active_index
            table._sessions[session.client_id] = session
        return table

    def _put(self, session: Session) -> None:
        self._sessions.pop(session.client_id, None)
        self._sessions[session.client_id] = session
