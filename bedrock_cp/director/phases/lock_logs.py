"""``lock_logs`` — locking: lock every log of the old layout with this epoch.

All in parallel, each bounded by ``parameters.lock_timeout``. A locked log
accepts no more pushes from older epochs, so from here on nothing can commit
in the old generation (I6). A ``NewerEpoch`` answer means a newer Director
exists: this one fails. A majority of the old logs must lock (a commit is
acknowledged only once durable on every log, so any one locked log has every
acknowledged version; the majority guards against an old layout we misread).
Once a majority locked, a log that stays silent (its node stopped) is not
waited for beyond a short grace: it locks nothing, and the old generation
cannot commit without it anyway.
"""

from __future__ import annotations

from ...protocol import LogLock, LogLocked
from ..attempt import Attempt, Stall
from ..context import RecoveryContext
from ._calls import call_quorum, majority


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    assert attempt.old_layout is not None, "validate_layout decodes the old layout first"
    logs = attempt.old_layout.logs
    need = majority(len(logs))
    answers = await call_quorum(
        attempt,
        ctx,
        [(ref, LogLock(ref.id, attempt.epoch)) for ref in logs],
        ctx.parameters.lock_timeout,
        need=need,
        answered=lambda a: isinstance(a, LogLocked),
    )
    attempt.locked = {}
    missing: list[str] = []
    for ref, answer in zip(logs, answers, strict=True):
        if isinstance(answer, LogLocked):
            attempt.locked[ref.id] = (ref, answer)
        else:
            missing.append(f"{ref.id}@{ref.node} ({answer})")
    if len(attempt.locked) < need:
        raise Stall(
            f"only {len(attempt.locked)} of {len(logs)} old logs locked (need {need}); "
            f"did not lock: {', '.join(missing)}"
        )
