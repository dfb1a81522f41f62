"""Phase 3 — log recovery planning: the range ``[first_version, recovery_version]``.

- ``recovery_version`` = the lowest ``durable`` of the locked logs. A commit is
  acknowledged only once durable on EVERY log of its layout, so every
  acknowledged version is at or below each log's durable version (I3); versions
  above it were never acknowledged and are dropped (storage rolls them back).
- ``first_version`` = the oldest version storage still needs — one above the
  lowest ``durable`` among the answering replicas of each team (a team with no
  answering replica stalls: its data would be unreachable) — or older: the
  oldest version the locked logs hold, so the new generation keeps all history
  and a replica that was down can rejoin later.
- Every version in the range must be readable from at least one locked log: a
  log whose chain starts at or below ``first_version - 1`` holds all of it (its
  batches chain without gaps up to its last version, which is at least its
  durable one). A log proves it by answering a pull after ``first_version - 1``.
"""

from __future__ import annotations

from ...protocol import LogBatches, LogPull, StorageState, StorageStatus, WorkerRef
from ..attempt import Attempt, Stall
from ..context import RecoveryContext
from ._calls import call_all


async def storage_floor(attempt: Attempt, ctx: RecoveryContext) -> int:
    """The lowest durable version over the teams (min over each team's answering replicas)."""
    assert attempt.old_layout is not None
    teams = attempt.old_layout.storage
    replicas = [r for team in teams for r in team.replicas]
    answers = await call_all(
        ctx, [(r, StorageStatus(r.id)) for r in replicas], ctx.parameters.call_timeout
    )
    durable: dict[str, int] = {
        r.id: a.durable
        for r, a in zip(replicas, answers, strict=True)
        if isinstance(a, StorageState)
    }
    floor: int | None = None
    for team in teams:
        known = [durable[r.id] for r in team.replicas if r.id in durable]
        if not known:
            raise Stall(
                f"storage team [{team.begin!r}, {team.end!r}) has no answering replica "
                f"({', '.join(r.id for r in team.replicas)})"
            )
        floor = min(known) if floor is None else min(floor, min(known))
    return floor or 0


async def spares(attempt: Attempt, ctx: RecoveryContext, floor: int) -> tuple[list[WorkerRef], int]:
    """Storage workers registered outside the old teams (a restarted node's
    replica) that the locked logs can bring up to date, and the lowest durable
    version among them (``floor`` if none). Only for the single full-range team
    the reference data plane builds: a spare holds that range's data."""
    assert attempt.old_layout is not None
    teams = attempt.old_layout.storage
    if len(teams) != 1:
        return [], floor
    in_team = {r.id for r in teams[0].replicas}
    candidates = [
        w
        for n in await ctx.nodes()
        for w in n.workers
        if w.kind == "storage" and w.id not in in_team
    ]
    if not candidates:
        return [], floor
    answers = await call_all(
        ctx, [(r, StorageStatus(r.id)) for r in candidates], ctx.parameters.call_timeout
    )
    logs = attempt.locked_logs()
    chosen: list[WorkerRef] = []
    low = floor
    for ref, answer in zip(candidates, answers, strict=True):
        if not isinstance(answer, StorageState):
            continue
        if answer.durable < floor:
            # Older than the team: only if a locked log still holds what it misses.
            pulls = await call_all(
                ctx,
                [(log, LogPull(log.id, after=answer.durable, limit=1)) for log in logs],
                ctx.parameters.call_timeout,
            )
            if not any(isinstance(p, LogBatches) for p in pulls):
                continue
            low = min(low, answer.durable)
        chosen.append(ref)
    return chosen, low


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    assert attempt.locked, "phase 2 locks the old logs first"
    recovery = min(locked.durable for _, locked in attempt.locked.values())
    floor = await storage_floor(attempt, ctx)
    attempt.spares, floor = await spares(attempt, ctx, floor)
    # Carry over everything the old generation held, not only what today's
    # replicas need: a replica that was down during this recovery (and so
    # could not report how far it got) can then still catch up when its node
    # returns. (Logs are never compacted yet; see the notes.)
    held = [locked.oldest for _, locked in attempt.locked.values() if locked.oldest > 0]
    first = min(floor + 1, recovery + 1, *held)
    attempt.recovery_version = recovery
    attempt.first_version = first
    if first > recovery:
        return  # nothing to replay: storage has everything durable
    sources: list[WorkerRef] = attempt.locked_logs()
    answers = await call_all(
        ctx,
        [(ref, LogPull(ref.id, after=first - 1, limit=1)) for ref in sources],
        ctx.parameters.call_timeout,
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
