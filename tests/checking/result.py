"""What a checker returns: :class:`CheckResult`, a verdict with its evidence."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .history import Op


def distinct(ops: Iterable[Op]) -> tuple[Op, ...]:
    """``ops`` without repeats (by id), in their first order."""
    by_id: dict[int, Op] = {}
    for op in ops:
        by_id.setdefault(op.id, op)
    return tuple(by_id.values())


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One violation: its kind (``G-single``, ``lost-write``, ``two-leaders``...),
    a sentence saying what was seen, and the ops that show it."""

    kind: str
    explanation: str
    ops: tuple[Op, ...] = ()

    def __str__(self) -> str:
        lines = [f"{self.kind}: {self.explanation}"]
        lines += [f"    {op.describe()}" for op in self.ops]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """``valid`` is True (no anomaly), False (anomalies found) or None: the
    checker could not decide (the history was too large to search) — never a
    pass in disguise. ``stats`` holds counts worth printing."""

    checker: str
    valid: bool | None
    anomalies: tuple[Anomaly, ...] = ()
    stats: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def kinds(self) -> set[str]:
        return {a.kind for a in self.anomalies}

    def __str__(self) -> str:
        verdict = {True: "valid", False: "INVALID", None: "UNKNOWN"}[self.valid]
        head = f"{self.checker}: {verdict}"
        if self.stats:
            head += " (" + ", ".join(f"{k}={v}" for k, v in self.stats.items()) + ")"
        if self.note:
            head += f"\n  {self.note}"
        return "\n".join([head, *(f"  {a}" for a in self.anomalies)])


def result(
    checker: str,
    anomalies: Iterable[Anomaly],
    *,
    undecided: str = "",
    **stats: Any,
) -> CheckResult:
    """A result from what a checker found; ``undecided`` names why it could not
    decide (only when it found no anomaly: a found anomaly is a verdict)."""
    found = tuple(anomalies)
    if found:
        return CheckResult(checker, False, found, stats, undecided)
    if undecided:
        return CheckResult(checker, None, (), stats, undecided)
    return CheckResult(checker, True, (), stats)
