"""Phase 6 — storage recruitment: keep the existing replicas.

Each old team keeps the replicas that answer ``Health``; a team left empty
stalls (its data lives nowhere reachable). A new cluster creates
``storage_replicas`` replicas round-robin over the nodes with the ``storage``
capability, as one team serving the whole user key space.
"""

from __future__ import annotations

from ...protocol import SYSTEM_PREFIX, Done, Health, StorageTeam
from ..attempt import Attempt, Stall
from ..context import STORAGE, RecoveryContext
from ._calls import call_all
from ._placement import create_round_robin


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    vacancies = attempt.vacancies
    assert vacancies is not None, "phase 4 describes the vacancies first"
    if not vacancies.storage:
        replicas = await create_round_robin(attempt, ctx, STORAGE, vacancies.new_storage)
        attempt.storage = [StorageTeam(b"", SYSTEM_PREFIX, replicas)]
        return
    replicas = [r for team in vacancies.storage for r in team.replicas]
    answers = await call_all(
        ctx, [(r, Health(r.id)) for r in replicas], ctx.parameters.call_timeout
    )
    alive = {r.id for r, a in zip(replicas, answers, strict=True) if isinstance(a, Done)}
    teams: list[StorageTeam] = []
    for team in vacancies.storage:
        kept = [r for r in team.replicas if r.id in alive]
        if not kept:
            raise Stall(
                f"storage team [{team.begin!r}, {team.end!r}) has no live replica "
                f"({', '.join(r.id for r in team.replicas)})"
            )
        teams.append(StorageTeam(team.begin, team.end, kept))
    if len(teams) == 1 and attempt.spares:
        # Put restarted replicas back, up to the wanted number (one per node).
        team = teams[0]
        nodes = {r.node for r in team.replicas}
        replicas = list(team.replicas)
        for spare in attempt.spares:
            if len(replicas) >= ctx.parameters.storage_replicas:
                break
            if spare.node not in nodes:
                replicas.append(spare)
                nodes.add(spare.node)
        teams = [StorageTeam(team.begin, team.end, replicas)]
    attempt.storage = teams
