"""``start_roles`` — sequencer, resolvers, commit proxies: start them on this node.

Their refs are decided first (new ids, this node), so the layout they belong
to can be composed and handed to each role (a proxy learns its sequencer,
resolvers and logs from it). The sequencer starts at the recovery version;
every role is locked to this epoch; proxies wait for the random token that
``build_layout`` unlocks them with. Each started role is recorded at once (rollback).
"""

from __future__ import annotations

from ...protocol import Layout, ResolverAssignment, WorkerRef, encode_layout
from ..attempt import Attempt, Stall
from ..context import RecoveryContext

SEQUENCER = "sequencer"
RESOLVER = "resolver"
COMMIT_PROXY = "commit_proxy"


def compose(attempt: Attempt) -> Layout:
    """The layout of this attempt from what the phases decided."""
    vacancies = attempt.vacancies
    assert vacancies is not None and attempt.sequencer is not None
    return Layout(
        epoch=attempt.epoch,
        recovery_version=vacancies.start_version,
        sequencer=attempt.sequencer,
        proxies=list(attempt.proxies),
        resolvers=list(attempt.resolvers),
        logs=list(attempt.logs),
        storage=list(attempt.storage),
    )


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    vacancies = attempt.vacancies
    assert vacancies is not None, "vacancies describes the vacancies first"

    def here(kind: str) -> WorkerRef:
        return WorkerRef(ctx.new_worker_id(kind), kind, ctx.node, ctx.address)

    attempt.sequencer = here(SEQUENCER)
    attempt.resolvers = [
        ResolverAssignment(r.begin, r.end, here(RESOLVER)) for r in vacancies.resolver_ranges
    ]
    attempt.proxies = [here(COMMIT_PROXY) for _ in range(vacancies.proxies)]
    attempt.token = ctx.random_token()
    attempt.layout = compose(attempt)
    attempt.encoded_layout = encode_layout(attempt.layout)
    roles = [attempt.sequencer, *(r.worker for r in attempt.resolvers), *attempt.proxies]
    for ref in roles:
        try:
            started = await ctx.start_role(
                ref.kind, ref.id, vacancies.start_version, attempt.encoded_layout, attempt.token
            )
        except Exception as exc:
            raise Stall(f"could not start {ref.kind} {ref.id}: {exc}") from exc
        attempt.started_roles.append(started)
        if started != ref:
            raise Stall(f"{ref.kind} {ref.id} started as {started}, not as the layout names it")
