"""``persist`` — persistence: a system transaction through the new pipeline, then store.

The transaction writes ``\\xff/epoch`` = the epoch (decimal) through a new
proxy: once it is acknowledged, the whole pipeline (sequencer, resolvers,
every new log) works. Keys starting with ``0xff`` are refused in user
transactions; the proxy admits them only in a commit carrying this epoch's
unlock token, which only this Director holds. Then ``store_layout`` through
consensus: from then on the cluster follows the new layout. ``Superseded``
(the epoch is no longer current) fails this Director. Once the layout was
sent, it may be the stored one whatever the answer (a leader that loses its
leadership cannot tell whether the entry committed): the attempt's rollback
then keeps the workers it names (:mod:`..rollback`).
"""

from __future__ import annotations

from ...protocol import Commit, Committed, Mutation, MutationKind
from ..attempt import Attempt, Fail, Stall
from ..context import RecoveryContext, Superseded
from ._calls import call_one

EPOCH_KEY = b"\xff/epoch"


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    layout = attempt.layout
    assert layout is not None, "build_layout composes the layout first"
    proxy = layout.proxies[0]
    txn = Commit(
        proxy.id,
        layout.recovery_version,
        [],
        [],
        [Mutation(MutationKind.SET, EPOCH_KEY, str(attempt.epoch).encode())],
        attempt.token,
    )
    answer = await call_one(ctx, proxy, txn, ctx.parameters.call_timeout)
    if not isinstance(answer, Committed):
        raise Stall(f"the system transaction did not commit: {answer}")
    attempt.layout_offered = True
    try:
        await ctx.store_layout(attempt.encoded_layout)
    except Superseded as exc:
        raise Fail(f"superseded while storing the layout: {exc}") from exc
    except Exception as exc:  # consensus unreachable, ...: the environment may recover
        raise Stall(f"could not store the layout: {type(exc).__name__}: {exc}") from exc
