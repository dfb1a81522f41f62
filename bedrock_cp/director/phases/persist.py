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

The transaction waits on every component of the pipeline. One whose node is
stopped now (SIGSTOP, a partition: no reset), after the monitor found it
alive, would hold it for the call timeout: while it is unanswered, the
pipeline's components are asked ``Health`` as the monitor asks them, and one
that fails stalls the attempt at once, its node silent (as the monitor's).
Slow alone is no death (a disk taking its time): the transaction goes on
while every component answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine

from ...protocol import Commit, Committed, Layout, Mutation, MutationKind, WorkerRef
from ..attempt import Attempt, Fail, Stall
from ..context import RecoveryContext, Superseded
from ._calls import TIMED_OUT, Answer, call_one
from .monitor import HEALTH_TIMEOUT, components, dead

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
    answer = await _while_alive(
        attempt, ctx, layout, call_one(ctx, proxy, txn, ctx.parameters.call_timeout)
    )
    if not isinstance(answer, Committed):
        raise Stall(f"the system transaction did not commit: {answer}")
    attempt.layout_offered = True
    try:
        await ctx.store_layout(attempt.encoded_layout)
    except Superseded as exc:
        raise Fail(f"superseded while storing the layout: {exc}") from exc
    except Exception as exc:  # consensus unreachable, ...: the environment may recover
        raise Stall(f"could not store the layout: {type(exc).__name__}: {exc}") from exc


async def _while_alive(
    attempt: Attempt,
    ctx: RecoveryContext,
    layout: Layout,
    commit: Coroutine[object, object, Answer],
) -> Answer:
    """``commit``'s answer; while it is slow, the pipeline is checked every
    half health timeout and a component that fails its check stalls the attempt."""
    task = asyncio.ensure_future(commit)
    check: asyncio.Future[list[tuple[WorkerRef, str]]] | None = None
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEALTH_TIMEOUT / 2)
            if not done:
                check = asyncio.ensure_future(
                    dead(ctx, components(layout, storage=False), HEALTH_TIMEOUT)
                )
                await asyncio.wait({task, check}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            assert check is not None
            if missing := check.result():
                attempt.silent.update(r.node for r, why in missing if why == TIMED_OUT)
                raise Stall(
                    "components not running under the system transaction: "
                    + "; ".join(f"{r.kind} {r.id}: {why}" for r, why in missing)
                )
    finally:
        for pending in (task, check):
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
