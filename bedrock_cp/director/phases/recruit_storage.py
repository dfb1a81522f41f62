"""``recruit_storage`` — storage recruitment: keep the existing replicas, add filled spares.

Each old team keeps its members the plan knows (``plan_log_recovery``): those that answer
``Health`` serve reads (``replicas``), the others stay ``absent`` — their node
is down: they serve nothing, but the new logs keep what they have not made
durable, so one that returns catches up and the next recovery takes it back.
A member silent for longer than ``storage_replacement_s`` is replaced by the
Director's data distribution and retired; retired members are left out. A
team without one live replica stalls (its data lives nowhere reachable).
Spares (replicas filled to replace a lost one) join the single team, one per
node, until it has ``storage_replicas`` members.

A new cluster creates ``storage_replicas`` replicas round-robin over the nodes
with the ``storage`` capability, as one team serving the whole user key space.
"""

from __future__ import annotations

from ...protocol import SYSTEM_PREFIX, Done, Health, StorageTeam
from ..attempt import Attempt, Stall
from ..context import STORAGE, RecoveryContext
from ._calls import all_but_one, call_quorum
from ._placement import create_round_robin


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    vacancies = attempt.vacancies
    assert vacancies is not None, "vacancies describes the vacancies first"
    if not vacancies.storage:
        replicas = await create_round_robin(attempt, ctx, STORAGE, vacancies.new_storage)
        attempt.storage = [StorageTeam(b"", SYSTEM_PREFIX, replicas)]
        return
    members = [r for team in vacancies.storage for r in team.members()]
    # A member that stays silent once most answered is absent (its node stopped).
    answers = await call_quorum(
        attempt,
        ctx,
        [(r, Health(r.id)) for r in members],
        ctx.parameters.call_timeout,
        need=all_but_one(len(members)),
        answered=lambda a: isinstance(a, Done),
    )
    alive = {r.id for r, a in zip(members, answers, strict=True) if isinstance(a, Done)}
    teams: list[StorageTeam] = []
    for team in vacancies.storage:
        kept = [r for r in team.members() if r.id in attempt.durables]
        serving = [r for r in kept if r.id in alive]
        if not serving:
            raise Stall(
                f"storage team [{team.begin!r}, {team.end!r}) has no live replica "
                f"({', '.join(r.id for r in team.members())})"
            )
        teams.append(
            StorageTeam(team.begin, team.end, serving, [r for r in kept if r not in serving])
        )
    if len(teams) == 1 and attempt.spares:
        # Add filled spares, up to the wanted number of members (one per node).
        team = teams[0]
        nodes = {r.node for r in team.replicas}
        replicas = list(team.replicas)
        for spare in attempt.spares:
            if len(replicas) + len(team.absent) >= ctx.parameters.storage_replicas:
                break
            if spare.node not in nodes:
                replicas.append(spare)
                nodes.add(spare.node)
        teams = [StorageTeam(team.begin, team.end, replicas, team.absent)]
    attempt.storage = teams
