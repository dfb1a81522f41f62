"""What a Director is doing, for ``status --json``: :class:`RecoveryStatus`.

The state (``recovering``, ``running``, ``stalled``, ``failed``), the current
phase and attempt, the last reason, and a timeline of the last
:data:`TIMELINE_LENGTH` recovery attempts with per-phase durations. One status
object may be shared by the successive Directors of a node, so the timeline
spans epochs.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .attempt import PhaseEvent

TIMELINE_LENGTH = 10


class RecoveryState(StrEnum):
    """What a node's Director is doing (``status``: ``recovery.state``)."""

    #: An attempt is running its phases.
    RECOVERING = "recovering"
    #: The epoch is live: its layout stored, its roles watched.
    RUNNING = "running"
    #: The last attempt could not go on (too few nodes, say): retried with backoff.
    STALLED = "stalled"
    #: The epoch ended (a component died, a better layout is possible, or this
    #: Director was superseded or stopped).
    FAILED = "failed"


RECOVERING = RecoveryState.RECOVERING
RUNNING = RecoveryState.RUNNING
STALLED = RecoveryState.STALLED
FAILED = RecoveryState.FAILED


@dataclass
class RecoveryRecord:
    """One recovery attempt: its phases, how long it took, how it ended."""

    epoch: int
    attempt: int
    started: float
    phases: list[PhaseEvent] = field(default_factory=list)
    duration_ms: float = 0.0
    outcome: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "attempt": self.attempt,
            "started": self.started,
            "duration_ms": round(self.duration_ms, 3),
            "outcome": self.outcome,
            "phases": [
                {"phase": e.phase, "duration_ms": round(e.duration_ms, 3), "outcome": e.outcome}
                for e in self.phases
            ],
        }


@dataclass
class RecoveryStatus:
    state: RecoveryState = RecoveryState.RECOVERING
    epoch: int = 0
    phase: str | None = None
    attempt: int = 0
    reason: str = ""
    timeline: deque[RecoveryRecord] = field(default_factory=lambda: deque(maxlen=TIMELINE_LENGTH))
    #: Rounds of the live epochs' watch so far.
    watch_rounds: int = 0
    #: ``Health`` checks the watch sent so far, by the node of the component.
    health_checks: Counter[str] = field(default_factory=Counter)

    def begin(self, epoch: int, attempt: int, now: float) -> RecoveryRecord:
        """A new attempt starts: it becomes the newest entry of the timeline."""
        record = RecoveryRecord(epoch, attempt, now)
        self.timeline.append(record)
        self.state, self.epoch, self.attempt, self.phase = RECOVERING, epoch, attempt, None
        return record

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "epoch": self.epoch,
            "phase": self.phase,
            "attempt": self.attempt,
            "reason": self.reason,
            "timeline": [r.to_dict() for r in self.timeline],
            "monitor": {
                "rounds": self.watch_rounds,
                "health_checks": dict(sorted(self.health_checks.items())),
            },
        }
