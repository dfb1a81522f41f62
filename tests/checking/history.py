"""Histories: what clients asked, when, and what they were told.

An :class:`Op` is one operation of one process (a client task): its type
(``f``), its arguments, when it was invoked and completed on a monotonic clock,
and its outcome:

- ``ok`` — it took effect; ``value`` holds what it returned;
- ``fail`` — it certainly did not take effect (refused, conflict, aborted);
- ``info`` — nobody knows: timed out, connection lost, ``commit_unknown_result``.
  It may have taken effect at any moment after its invocation, or never.

:class:`History` records operations as they happen (``pending =
history.invoke(...)`` then ``pending.ok(value)`` / ``.fail(why)`` /
``.info(why)``), from threads or tasks alike; an operation still pending when
the history is read counts as ``info``. The checkers are pure functions over a
sequence of ops, so a recorded history, a hand-made one in a unit test and one
from a simulation are all checked the same way. Histories round-trip through
JSON lines (:func:`dump` / :func:`load`) to keep a failing run for study.
"""

from __future__ import annotations

import enum
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


class Outcome(enum.StrEnum):
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Op:
    """One operation; see the module docstring.

    Invariant: ``complete is None`` only for ``info`` (an operation that never
    completed), and ``invoke <= complete`` otherwise.
    """

    id: int
    process: int | str
    f: str
    args: Any
    invoke: float
    complete: float | None
    outcome: Outcome
    value: Any = None
    #: Why it failed or is unknown; for an ok op, notes for the report (where it
    #: read, what went wrong on the way).
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL

    @property
    def unknown(self) -> bool:
        return self.outcome is Outcome.INFO

    def describe(self) -> str:
        """One line for reports: ``#12 p3 register ('s', 'v') -> 7 ok [1.204-1.310 s]``."""
        span = f"{self.invoke:.3f}-" + ("?" if self.complete is None else f"{self.complete:.3f}")
        shown = short(self.args)
        if self.ok and self.value is not None:
            # A transaction's value is its micro-ops with the reads filled in.
            shown = short(self.value) if self.f == "txn" else f"{shown} -> {short(self.value)}"
        why = f" ({self.error})" if self.error else ""
        return f"#{self.id} p{self.process} {self.f} {shown} {self.outcome}{why} [{span} s]"


def short(value: Any, limit: int = 6) -> str:
    """``repr`` with long sequences cut in the middle: ``(1, 2, 3, ..., 98, 99 | 40 values)``."""
    if isinstance(value, tuple | list) and len(value) > limit:
        head = ", ".join(short(v, limit) for v in value[: limit // 2])
        tail = ", ".join(short(v, limit) for v in value[-(limit // 2) :])
        return f"({head}, ..., {tail} | {len(value)} values)"
    if isinstance(value, tuple):
        inner = ", ".join(short(v, limit) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(short(v, limit) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {short(v, limit)}" for k, v in value.items()) + "}"
    return repr(value)


def make_op(
    id: int,
    process: int | str,
    f: str,
    args: Any,
    invoke: float,
    complete: float | None,
    outcome: Outcome | str = Outcome.OK,
    value: Any = None,
    error: str = "",
) -> Op:
    """An :class:`Op` for hand-made histories (``outcome`` may be a plain string)."""
    outcome = Outcome(outcome)
    if complete is None and outcome is not Outcome.INFO:
        raise ValueError(f"op {id}: only an info op may lack a completion time")
    if complete is not None and complete < invoke:
        raise ValueError(f"op {id}: completes ({complete}) before it is invoked ({invoke})")
    return Op(id, process, f, args, invoke, complete, outcome, value, error)


@dataclass(slots=True)
class Pending:
    """An invoked operation: resolve it once, with :meth:`ok`, :meth:`fail` or :meth:`info`."""

    history: History
    op: Op
    done: bool = field(default=False)

    def ok(self, value: Any = None, note: str = "") -> Op:
        """It took effect; ``note`` is for the report (versions, retried attempts)."""
        return self.history._complete(self, Outcome.OK, value, note)

    def fail(self, error: str) -> Op:
        return self.history._complete(self, Outcome.FAIL, None, error)

    def info(self, error: str) -> Op:
        return self.history._complete(self, Outcome.INFO, None, error)


class History:
    """A thread- and task-safe recorder of operations on one monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ops: list[Op] = []
        self._pending: dict[int, Pending] = {}
        self._epoch = clock()

    def now(self) -> float:
        """Seconds since this history began (the times ops carry)."""
        return self._clock() - self._epoch

    def invoke(self, process: int | str, f: str, args: Any) -> Pending:
        with self._lock:
            op = Op(len(self._ops), process, f, args, self.now(), None, Outcome.INFO)
            self._ops.append(op)
            pending = Pending(self, op)
            self._pending[op.id] = pending
            return pending

    def _complete(self, pending: Pending, outcome: Outcome, value: Any, error: str) -> Op:
        with self._lock:
            if pending.done:
                raise RuntimeError(f"op {pending.op.id} resolved twice")
            pending.done = True
            del self._pending[pending.op.id]
            # An info op never completed as far as anyone knows: it may take
            # effect later still, so it keeps no completion time.
            complete = None if outcome is Outcome.INFO else self.now()
            op = replace(pending.op, complete=complete, outcome=outcome, value=value, error=error)
            self._ops[op.id] = op
            return op

    def ops(self) -> list[Op]:
        """Every op so far, in invocation order; pending ones are ``info``."""
        with self._lock:
            return [
                replace(op, error="still pending") if op.id in self._pending else op
                for op in self._ops
            ]

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)


# -- JSON lines --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Tuples become lists, dicts keep string keys: what JSON can hold."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _frozen(value: Any) -> Any:
    """Lists back to tuples (the checkers compare and hash micro-ops)."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return value


def dump(ops: Iterable[Op], path: str | Path) -> Path:
    """Write ``ops`` as JSON lines; returns the path."""
    path = Path(path)
    with path.open("w") as out:
        for op in ops:
            row = {
                "id": op.id,
                "process": op.process,
                "f": op.f,
                "args": _plain(op.args),
                "invoke": op.invoke,
                "complete": op.complete,
                "outcome": str(op.outcome),
                "value": _plain(op.value),
                "error": op.error,
            }
            out.write(json.dumps(row) + "\n")
    return path


def load(path: str | Path) -> list[Op]:
    """The ops :func:`dump` wrote (sequences come back as tuples)."""
    ops = []
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        ops.append(
            Op(
                row["id"],
                row["process"],
                row["f"],
                _frozen(row["args"]),
                row["invoke"],
                row["complete"],
                Outcome(row["outcome"]),
                _frozen(row["value"]),
                row["error"],
            )
        )
    return ops
