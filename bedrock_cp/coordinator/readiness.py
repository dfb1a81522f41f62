"""What a coordinator can do for clients now: its readiness."""

from __future__ import annotations

from enum import StrEnum


class Readiness(StrEnum):
    """Reported by ``Ping`` and ``status`` as ``state``/``leader_state``."""

    FOLLOWER = "follower"
    #: Electing (a candidate or pre-candidate): no leader known here.
    CANDIDATE = "candidate"
    #: Leading, but the first entry of its term has not committed yet: it
    #: cannot answer linearizable reads nor start a Director.
    WAITING_CONSENSUS = "waiting_consensus"
    #: Leading, its term's first entry applied: it serves everything.
    READY = "ready"
