"""``replay_logs`` — log replay: copy ``[first_version, recovery_version]`` into the new logs.

``LogRecover`` on every new log in parallel, with the locked old logs as
sources: each new log then holds exactly that range, chains its next batch
from ``recovery_version`` and belongs to this epoch (an older Director can no
longer push to it, I6). Each also learns the storage replicas of the new
layout with how far each got (``plan_log_recovery``), so it never discards what one of them
still needs. A new cluster's logs get the empty range ``[1, 0]``: they start
empty at version 0 and are fenced by this epoch all the same.
"""

from __future__ import annotations

from ...protocol import LogRecover, LogRecovered, ReplicaProgress
from ..attempt import Attempt, Stall
from ..context import RecoveryContext
from ._calls import call_all

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
    answers = await call_all(
        ctx,
        [
            (ref, LogRecover(ref.id, attempt.epoch, sources, first, last, replicas))
            for ref in attempt.logs
        ],
        ctx.parameters.call_timeout * REPLAY_TIMEOUTS,
    )
    failed = [
        f"{ref.id}: {answer}"
        for ref, answer in zip(attempt.logs, answers, strict=True)
        if not isinstance(answer, LogRecovered)
    ]
    if failed:
        raise Stall(f"log replay of [{first}, {last}] failed: {'; '.join(failed)}")
