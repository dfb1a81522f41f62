"""``lock_logs`` — locking: lock every log of the old layout with this epoch.

All in parallel, each bounded by ``parameters.lock_timeout``. A locked log
accepts no more pushes from older epochs, so from here on nothing can commit
in the old generation (I6). A ``NewerEpoch`` answer means a newer Director
exists: this one fails.

**One locked log is enough.** A commit is acknowledged only once it is durable
on *every* log of its layout, so any one locked log holds every acknowledged
version (the recovery range ends at its durable version), and once one log
refuses the old epoch's pushes, that epoch can acknowledge nothing more. This
is FoundationDB's rule for a log set whose every log takes every commit (with
*n* logs and a replication factor of *n*, ``n - n + 1`` must lock); a majority
would add nothing to safety and would stall a two-log layout (built while a
node was down) as soon as one more node stops. The others get a short grace
once one locked (see :func:`~._calls.call_quorum`): each one that locks can
only lower the recovery version toward what was acknowledged.
"""

from __future__ import annotations

from ...protocol import LogLock, LogLocked
from ..attempt import Attempt, Stall
from ..context import RecoveryContext
from ._calls import call_quorum

#: How many old logs must lock (see the module docstring).
NEED_LOCKED = 1


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    assert attempt.old_layout is not None, "validate_layout decodes the old layout first"
    logs = attempt.old_layout.logs
    answers = await call_quorum(
        attempt,
        ctx,
        [(ref, LogLock(ref.id, attempt.epoch)) for ref in logs],
        ctx.parameters.lock_timeout,
        need=NEED_LOCKED,
        answered=lambda a: isinstance(a, LogLocked),
    )
    attempt.locked = {}
    missing: list[str] = []
    for ref, answer in zip(logs, answers, strict=True):
        if isinstance(answer, LogLocked):
            attempt.locked[ref.id] = (ref, answer)
        else:
            missing.append(f"{ref.id}@{ref.node} ({answer})")
    if len(attempt.locked) < NEED_LOCKED:
        raise Stall(f"none of the {len(logs)} old logs locked; did not lock: {', '.join(missing)}")
