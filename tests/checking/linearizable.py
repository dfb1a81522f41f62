"""Linearizability of the directory, one service id at a time.

The directory is a map from service id to record, so each id is checked as an
independent register (P-compositionality: the map's history is linearizable
only if every key's projection is, and per-key searches stay small). Ops
(``f``, ``args`` -> ``value`` when ok):

- ``register``: ``(service_id, value)`` — writes ``value`` (each write's value
  is unique, e.g. its address, so a read tells which write it saw);
- ``deregister``: ``(service_id,)`` — writes "absent";
- ``read``: ``(service_id, ...)`` the ids watched -> ``{service_id: value}``
  for those present; a watched id missing from the answer reads "absent".

Per key, the search is Wing & Gong's with Lowe's memoization: linearize, one
at a time, an op that no pending acknowledged op precedes in real time; a read
must return the register's value at its point. Acknowledged (``ok``) ops must
all be placed; an ``info`` write (timed out, connection lost) may be placed
anywhere after its invocation or not at all; ``fail`` ops and ``info`` reads
say nothing and are dropped. A key whose search exceeds ``max_states``
distinct (placed set, value) states is reported undecided, never hung on.

Checking keys apart is exact for ops on one key; a read of the whole map is
split into one read per key, so an anomaly that only shows across keys (a read
of two ids at two different moments) is outside what this checker sees.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from .history import Op
from .result import Anomaly, CheckResult, distinct, result


class _Absent:
    """The value of a key that holds nothing."""

    def __repr__(self) -> str:
        return "absent"


ABSENT: Hashable = _Absent()
DEFAULT_MAX_STATES = 200_000


@dataclass(frozen=True, slots=True)
class RegisterCall:
    """One op on one register: a write of ``value`` or a read that returned it."""

    op: Op
    write: bool
    value: Hashable
    invoke: float
    #: math.inf for an info write: it may take effect at any time after invoke.
    complete: float

    @property
    def required(self) -> bool:
        return self.op.ok


@dataclass(frozen=True, slots=True)
class RegisterVerdict:
    """``linearizable`` is None when the search gave up; ``explanation`` says why not."""

    linearizable: bool | None
    states: int
    explanation: str = ""
    evidence: tuple[Op, ...] = ()


def _call(op: Op, write: bool, value: Hashable) -> RegisterCall:
    complete = math.inf if op.complete is None else op.complete
    return RegisterCall(op, write, value, op.invoke, complete)


def register_calls(history: Sequence[Op]) -> dict[Hashable, list[RegisterCall]]:
    """The directory history split into one register history per service id."""
    by_key: dict[Hashable, list[RegisterCall]] = defaultdict(list)
    written: set[Hashable] = set()
    for op in history:
        if op.f in ("register", "deregister"):
            written.add(op.args[0])
    for op in history:
        if op.failed:
            continue  # certainly not applied, and returned nothing
        if op.f == "register":
            by_key[op.args[0]].append(_call(op, True, op.args[1]))
        elif op.f == "deregister":
            by_key[op.args[0]].append(_call(op, True, ABSENT))
        elif op.f == "read" and op.ok:
            watched = op.args if op.args else tuple(written)
            seen = op.value or {}
            for key in watched:
                by_key[key].append(_call(op, False, seen.get(key, ABSENT)))
    return dict(by_key)


def check_register(
    calls: Sequence[RegisterCall],
    *,
    initial: Hashable = ABSENT,
    max_states: int = DEFAULT_MAX_STATES,
) -> RegisterVerdict:
    """Is there an order of ``calls`` that respects real time and register semantics?"""
    calls = sorted(calls, key=lambda c: c.invoke)
    required = 0
    for i, c in enumerate(calls):
        if c.required:
            required |= 1 << i
    # Acknowledged ops by completion: the first one not yet placed bounds what may go next.
    by_complete = sorted((c.complete, i) for i, c in enumerate(calls) if c.required)
    stack: list[tuple[int, Hashable]] = [(0, initial)]
    seen: set[tuple[int, Hashable]] = set()
    best = (-1, 0, initial)
    while stack:
        mask, state = stack.pop()
        if mask & required == required:
            return RegisterVerdict(True, len(seen))
        if (mask, state) in seen:
            continue
        seen.add((mask, state))
        if len(seen) > max_states:
            return RegisterVerdict(None, len(seen), f"more than {max_states} states")
        placed = (mask & required).bit_count()
        if placed > best[0]:
            best = (placed, mask, state)
        bound = next(t for t, i in by_complete if not mask >> i & 1)
        nexts: list[tuple[int, Hashable]] = []
        greedy: int | None = None
        for i, c in enumerate(calls):
            if mask >> i & 1:
                continue
            if c.invoke > bound:
                break
            if not c.write:
                if c.value == state:
                    # A read that fits now may as well go now: moving it earlier
                    # breaks no real-time order and changes no value.
                    greedy = i
                    break
                continue
            nexts.append((mask | 1 << i, c.value))
        if greedy is not None:
            stack.append((mask | 1 << greedy, state))
        else:
            stack.extend(reversed(nexts))
    _, mask, state = best
    return RegisterVerdict(False, len(seen), *_explain(calls, mask, state))


def _explain(
    calls: Sequence[RegisterCall], mask: int, state: Hashable
) -> tuple[str, tuple[Op, ...]]:
    """Where the deepest search got stuck: what was placed, what could not follow."""
    placed = [c for i, c in enumerate(calls) if mask >> i & 1]
    pending = [c for i, c in enumerate(calls) if not mask >> i & 1 and c.required]
    bound = min(c.complete for c in pending)
    stuck = [c for c in pending if c.invoke <= bound]
    reasons = []
    for c in stuck[:4]:
        if not c.write:
            reasons.append(f"op #{c.op.id} read {c.value!r} but the value was {state!r}")
    if not reasons:
        reasons.append(f"op #{stuck[0].op.id} fits nowhere")
    text = (
        f"{len(placed)} op(s) placed at best, the value then {state!r}; "
        + "; ".join(reasons)
        + f" ({len(pending)} acknowledged op(s) left)"
    )
    shown = [c.op for c in placed[-4:]] + [c.op for c in stuck[:4]]
    return text, distinct(shown)


def check_directory(history: Sequence[Op], *, max_states: int = DEFAULT_MAX_STATES) -> CheckResult:
    """Linearizability of register/deregister/read ops (see the module docstring)."""
    anomalies: list[Anomaly] = []
    undecided: list[str] = []
    states = 0
    keys = register_calls(history)
    for key, calls in sorted(keys.items(), key=lambda kv: str(kv[0])):
        verdict = check_register(calls, max_states=max_states)
        states += verdict.states
        if verdict.linearizable is None:
            undecided.append(f"{key!r} ({len(calls)} ops, {verdict.explanation})")
        elif not verdict.linearizable:
            anomalies.append(
                Anomaly(
                    "nonlinearizable",
                    f"service {key!r}: no order of its {len(calls)} ops agrees with what "
                    f"they returned; {verdict.explanation}",
                    verdict.evidence,
                )
            )
    return result(
        "directory linearizability",
        anomalies,
        undecided="too large to check: " + ", ".join(undecided) if undecided else "",
        ops=len(history),
        keys=len(keys),
        states=states,
    )
