"""``replay_logs`` — log replay: copy ``[first_version, recovery_version]`` into the new logs.

``LogRecover`` on every new log in parallel, with the locked old logs as
sources: each new log then holds exactly that range, chains its next batch
from ``recovery_version`` and belongs to this epoch (an older Director can no
longer push to it, I6). Each also learns the storage replicas of the new
layout with how far each got (``plan_log_recovery``), so it never discards what one of them
still needs. A new cluster's logs get the empty range ``[1, 0]``: they start
empty at version 0 and are fenced by this epoch all the same.

**Enough new logs, not all.** Only the logs that answered ``LogRecovered``
stay in the new layout: a commit of this epoch then goes to them alone, so
each holds the range and every later commit. As many as recruitment needs
(:func:`~._placement.least`: a majority of the wanted ones) must recover; once
they did, the others get a short grace (:func:`~._calls.call_quorum`) and are
then left out, like a creation that stays silent: a new log whose node
stopped (SIGSTOP, no reset) or failed does not hold the recovery for the
whole replay timeout. A log left out is an orphan of this epoch (retired by
a later one); the layout is degraded until its node answers again.
"""

from __future__ import annotations

from ...protocol import LogRecover, LogRecovered, ReplicaProgress
from ..attempt import Attempt, Stall
from ..context import RecoveryContext
from ._calls import call_quorum
from ._placement import least

#: Replay copies data (in bounded pulls): it gets this many call timeouts.
REPLAY_TIMEOUTS = 30


def served(attempt: Attempt) -> list[ReplicaProgress]:
    """The new layout's storage replicas (absent ones too), each with the version
    the logs keep it from."""
    floor = attempt.first_version - 1
    out: dict[str, int] = {}
    for team in attempt.storage:
        for r in team.members():
            out[r.id] = max(floor, attempt.durables.get(r.id, floor))
    return [ReplicaProgress(r, v) for r, v in sorted(out.items())]


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    sources = attempt.locked_logs()
    first, last = attempt.first_version, attempt.recovery_version
    replicas = served(attempt)
    logs = attempt.logs
    answers = await call_quorum(
        attempt,
        ctx,
        [(ref, LogRecover(ref.id, attempt.epoch, sources, first, last, replicas)) for ref in logs],
        ctx.parameters.call_timeout * REPLAY_TIMEOUTS,
        need=least(attempt, ctx, ctx.parameters.desired_logs),
        answered=lambda a: isinstance(a, LogRecovered),
    )
    recovered = [ref for ref, a in zip(logs, answers, strict=True) if isinstance(a, LogRecovered)]
    if len(recovered) < least(attempt, ctx, ctx.parameters.desired_logs) or not recovered:
        failed = [
            f"{ref.id}: {answer}"
            for ref, answer in zip(logs, answers, strict=True)
            if not isinstance(answer, LogRecovered)
        ]
        raise Stall(f"log replay of [{first}, {last}] failed: {'; '.join(failed)}")
    attempt.logs = recovered
