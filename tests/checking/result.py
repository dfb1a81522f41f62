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
        return self.render()

    def render(self, per_kind: int = 3) -> str:
        """The verdict, the stats, and up to ``per_kind`` anomalies of each kind."""
        verdict = {True: "valid", False: "INVALID", None: "UNKNOWN"}[self.valid]
        lines = [f"{self.checker}: {verdict}"]
        if self.stats:
            lines[0] += " (" + ", ".join(f"{k}={v}" for k, v in self.stats.items()) + ")"
        if self.note:
            lines.append(f"  {self.note}")
        by_kind: dict[str, list[Anomaly]] = {}
        for a in self.anomalies:
            by_kind.setdefault(a.kind, []).append(a)
        for kind, found in by_kind.items():
            lines.append(f"  {len(found)} x {kind}")
            lines += [f"  {a}".replace("\n", "\n  ") for a in found[:per_kind]]
        return "\n".join(lines)


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
