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
say nothing and are dropped. Since every register value is written once, an
info write nobody read is dropped too, and one somebody read is required to
precede that read — both exact, and they keep the search small; what stays
optional (info deregisters) is tracked as a count of spare writes per value.
A key whose search exceeds ``max_states`` distinct states is reported
undecided, never hung on.

Checking keys apart is exact for ops on one key; a read of the whole map is
split into one read per key, so an anomaly that only shows across keys (a read
of two ids at two different moments) is outside what this checker sees.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

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
    #: Must be placed (acknowledged); an info write need not be.
    required: bool


@dataclass(frozen=True, slots=True)
class RegisterVerdict:
    """``linearizable`` is None when the search gave up; ``explanation`` says why not."""

    linearizable: bool | None
    states: int
    explanation: str = ""
    evidence: tuple[Op, ...] = ()


def _call(op: Op, write: bool, value: Hashable) -> RegisterCall:
    complete = math.inf if op.complete is None else op.complete
    return RegisterCall(op, write, value, op.invoke, complete, op.ok)


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


def _prepare(calls: Sequence[RegisterCall]) -> list[RegisterCall]:
    """Resolve what can be resolved about info writes, exactly, then sort by invocation.

    An info write of a value written only once is either never read — then
    leaving it out changes no read, so it is left out — or read, and then it
    took effect before the first read of its value completed: it becomes a
    required op completing then. Info writes of other values (an absent key,
    values written twice) stay optional.
    """
    writes = Counter(c.value for c in calls if c.write)
    first_seen: dict[Hashable, float] = {}
    for c in calls:
        if not c.write and c.required:
            first_seen[c.value] = min(first_seen.get(c.value, math.inf), c.complete)
    out = []
    for c in calls:
        if c.write and not c.required and c.value is not ABSENT and writes[c.value] == 1:
            if c.value not in first_seen:
                continue
            c = replace(c, complete=first_seen[c.value], required=True)
        out.append(c)
    return sorted(out, key=lambda c: c.invoke)


# A search state: (lo, rest, spares, value). Every required op before index
# ``lo`` is placed and op ``lo`` is not; bit j of ``rest`` says op lo+j is
# placed; ``spares`` counts, per value, the optional writes before ``lo`` not
# placed: any of them may still go at any time, and which one does not matter.
_State = tuple[int, int, frozenset[tuple[Hashable, int]], Hashable]


def _with_spare(
    spares: frozenset[tuple[Hashable, int]], value: Hashable, delta: int
) -> frozenset[tuple[Hashable, int]]:
    counts = dict(spares)
    counts[value] = counts.get(value, 0) + delta
    return frozenset((v, n) for v, n in counts.items() if n > 0)


def check_register(
    calls: Sequence[RegisterCall],
    *,
    initial: Hashable = ABSENT,
    max_states: int = DEFAULT_MAX_STATES,
) -> RegisterVerdict:
    """Is there an order of ``calls`` that respects real time and register semantics?"""
    ops = _prepare(calls)
    n = len(ops)

    def advance(
        lo: int, rest: int, spares: frozenset[tuple[Hashable, int]]
    ) -> tuple[int, int, frozenset[tuple[Hashable, int]]]:
        while lo < n and (rest & 1 or not ops[lo].required):
            if not rest & 1:
                spares = _with_spare(spares, ops[lo].value, 1)
            lo, rest = lo + 1, rest >> 1
        return lo, rest, spares

    def bound_of(lo: int, rest: int) -> float:
        """When the first unplaced acknowledged op completed: nothing invoked later may go next."""
        bound = math.inf
        j = lo
        while j < n and ops[j].invoke <= bound:
            if ops[j].required and not rest >> (j - lo) & 1:
                bound = min(bound, ops[j].complete)
            j += 1
        return bound

    def place(state: _State, j: int, value: Hashable) -> _State:
        lo, rest, spares, _ = state
        return (*advance(lo, rest | 1 << (j - lo), spares), value)

    stack: list[_State] = [(*advance(0, 0, frozenset()), initial)]
    seen: set[_State] = set()
    best = stack[0]
    while stack:
        state = stack.pop()
        lo, rest, spares, value = state
        if lo == n:
            return RegisterVerdict(True, len(seen))
        if state in seen:
            continue
        seen.add(state)
        if len(seen) > max_states:
            return RegisterVerdict(None, len(seen), f"more than {max_states} states")
        if (lo, rest.bit_count()) > (best[0], best[1].bit_count()):
            best = state
        bound = bound_of(lo, rest)
        nexts: list[_State] = []
        greedy: int | None = None
        j = lo
        while j < n and ops[j].invoke <= bound:
            c = ops[j]
            if not rest >> (j - lo) & 1:
                if c.write:
                    nexts.append(place(state, j, c.value))
                elif c.value == value:
                    # A read that fits now may as well go now: moving it earlier
                    # breaks no real-time order and changes no value.
                    greedy = j
                    break
            j += 1
        if greedy is not None:
            stack.append(place(state, greedy, value))
            continue
        for spare, _ in spares:
            stack.append((lo, rest, _with_spare(spares, spare, -1), spare))
        stack.extend(reversed(nexts))
    lo, rest, _, value = best
    return RegisterVerdict(False, len(seen), *_explain(ops, lo, rest, value, bound_of(lo, rest)))


def _explain(
    ops: Sequence[RegisterCall], lo: int, rest: int, value: Hashable, bound: float
) -> tuple[str, tuple[Op, ...]]:
    """Where the deepest search got stuck: what was placed, what could not follow."""
    placed = [c for c in ops[:lo] if c.required]
    placed += [c for j, c in enumerate(ops[lo:]) if rest >> j & 1]
    pending = [c for j, c in enumerate(ops[lo:]) if c.required and not rest >> j & 1]
    stuck = [c for c in pending if c.invoke <= bound]
    reasons = [
        f"op #{c.op.id} read {c.value!r} but the value was {value!r}"
        for c in stuck[:4]
        if not c.write
    ] or [f"op #{stuck[0].op.id} fits nowhere"]
    text = (
        f"{len(placed)} acknowledged op(s) placed at best, the value then {value!r}; "
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
        ops=sum(1 for op in history if op.f in ("register", "deregister", "read")),
        keys=len(keys),
        states=states,
    )
