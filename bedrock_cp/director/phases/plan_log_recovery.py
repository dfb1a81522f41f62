"""``plan_log_recovery`` — log recovery planning: the range ``[first_version, recovery_version]``.

- ``recovery_version`` = the lowest ``durable`` of the locked logs. A commit is
  acknowledged only once durable on EVERY log of its layout, so every
  acknowledged version is at or below each log's durable version (I3); versions
  above it were never acknowledged and are dropped (storage rolls them back).
- ``first_version`` = one above the lowest durable version of the replicas the
  new layout keeps: what storage has not made durable is all a recovery copies.
  A replica that answers says how far it got; one that does not (its node is
  down) stays a member of its team (``absent``: it serves no reads) until it is
  replaced, at the version it last reported to a locked log — the logs never
  discarded anything above that, so when it returns it catches up from the
  new generation. A team with no answering replica stalls (its data would be
  unreachable); a replica no locked log knows of, or one retired, is left out.
- Every version in the range must be readable from at least one locked log: a
  log never discards what a replica it serves still needs, and the first
  version lies above every replica's durable version, so each locked log holds
  the range (its batches chain without gaps up to its last version, which is
  at least its durable one). A log proves it by answering a pull after
  ``first_version - 1``.
"""

from __future__ import annotations

from ...protocol import LogBatches, LogPull, StorageState, StorageStatus, WorkerRef
from ..attempt import Attempt, Stall
from ..context import RecoveryContext
from ._calls import all_but_one, call_all, call_quorum


def reported(attempt: Attempt) -> dict[str, int]:
    """The highest durable version each replica reported to any locked log."""
    out: dict[str, int] = {}
    for _, locked in attempt.locked.values():
        for progress in locked.replicas:
            out[progress.replica] = max(out.get(progress.replica, 0), progress.durable)
    return out


async def team_durables(attempt: Attempt, ctx: RecoveryContext) -> dict[str, int]:
    """How far each (not retired) member of the old teams got, answering or not."""
    assert attempt.old_layout is not None
    teams = attempt.old_layout.storage
    replicas = [r for team in teams for r in team.members() if r.id not in attempt.retired]
    # One that stays silent once most answered counts as not answering.
    answers = await call_quorum(
        attempt,
        ctx,
        [(r, StorageStatus(r.id)) for r in replicas],
        ctx.parameters.call_timeout,
        need=all_but_one(len(replicas)),
        answered=lambda a: isinstance(a, StorageState),
    )
    answered = {
        r.id: a.durable
        for r, a in zip(replicas, answers, strict=True)
        if isinstance(a, StorageState)
    }
    for team in teams:
        if not any(r.id in answered for r in team.members()):
            raise Stall(
                f"storage team [{team.begin!r}, {team.end!r}) has no answering replica "
                f"({', '.join(r.id for r in team.members())})"
            )
    known = reported(attempt)
    durables: dict[str, int] = {}
    for r in replicas:
        if r.id in answered:
            durables[r.id] = answered[r.id]
        elif r.id in known:
            durables[r.id] = known[r.id]
    return durables


async def spares(
    attempt: Attempt, ctx: RecoveryContext, floor: int
) -> tuple[list[WorkerRef], dict[str, int]]:
    """Storage workers registered outside the old teams (a replica filled to
    replace a lost one) that the locked logs can bring up to date, with their
    durable versions. Only for the single full-range team the reference data
    plane builds: a spare holds that range's data."""
    assert attempt.old_layout is not None
    teams = attempt.old_layout.storage
    if len(teams) != 1:
        return [], {}
    in_team = {r.id for r in teams[0].members()}
    candidates = [
        w
        for n in await ctx.nodes()
        for w in n.workers
        if w.kind == "storage" and w.id not in in_team and w.id not in attempt.retired
    ]
    if not candidates:
        return [], {}
    answers = await call_all(
        ctx, [(r, StorageStatus(r.id)) for r in candidates], ctx.parameters.call_timeout
    )
    logs = attempt.locked_logs()
    chosen: list[WorkerRef] = []
    durables: dict[str, int] = {}
    for ref, answer in zip(candidates, answers, strict=True):
        if not isinstance(answer, StorageState) or answer.fill not in ("", "filled"):
            continue  # unreachable, or a fill under way or failed: no data to trust yet
        if answer.durable < floor:
            # Older than the team: only if a locked log still holds what it misses.
            pulls = await call_all(
                ctx,
                [(log, LogPull(log.id, after=answer.durable, limit=1)) for log in logs],
                ctx.parameters.call_timeout,
            )
            if not any(isinstance(p, LogBatches) for p in pulls):
                continue
        chosen.append(ref)
        durables[ref.id] = answer.durable
    return chosen, durables


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    assert attempt.locked, "lock_logs locks the old logs first"
    recovery = min(locked.durable for _, locked in attempt.locked.values())
    attempt.retired = {w.id for w in await ctx.retiring()}
    durables = await team_durables(attempt, ctx)
    floor = min(durables.values(), default=recovery)
    attempt.spares, spare_durables = await spares(attempt, ctx, floor)
    durables.update(spare_durables)
    # Storage durable versions never pass what is committed (<= recovery).
    attempt.durables = {r: min(v, recovery) for r, v in durables.items()}
    first = min(min(attempt.durables.values(), default=recovery), recovery) + 1
    attempt.recovery_version = recovery
    attempt.first_version = first
    if first > recovery:
        return  # nothing to replay: storage has everything durable
    sources: list[WorkerRef] = attempt.locked_logs()
    # One holding log is enough to replay from: a silent one is not waited for.
    answers = await call_quorum(
        attempt,
        ctx,
        [(ref, LogPull(ref.id, after=first - 1, limit=1)) for ref in sources],
        ctx.parameters.call_timeout,
        need=1,
        answered=lambda a: isinstance(a, LogBatches) and a.durable >= recovery,
    )
    holding = [
        ref
        for ref, answer in zip(sources, answers, strict=True)
        if isinstance(answer, LogBatches) and answer.durable >= recovery
    ]
    if not holding:
        raise Stall(
            f"no locked log holds versions [{first}, {recovery}] "
            f"({', '.join(f'{r.id}: {a}' for r, a in zip(sources, answers, strict=True))})"
        )
