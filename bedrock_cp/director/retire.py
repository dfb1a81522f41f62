"""Retirement: once an epoch is live, remove what older epochs left behind.

Three things outlive the epoch that made them:

- **transaction roles** (sequencers, commit proxies, resolvers) of older epochs
  on nodes that are still up: an old sequencer would keep handing out read
  versions to a client that still holds the old layout;
- **old log generations**: once the live layout is stored, every version a
  replica still needs was copied into its logs (a replica that was down is
  served from the version it last reported), so the generation it recovered
  from, and any older one, holds nothing needed;
- **storage replicas outside the live layout**: replicas replaced after being
  lost for good, and the orphans of attempts or fills that were cut short.

After the new layout is stored, the Director lists every registered node's
workers and retires those created for an older epoch that the live layout
does not use (``keep`` adds a replica being filled right now), and the logs
of the generation it recovered from, even those on nodes that are down. Roles are just
stopped. Persistent workers are first recorded as retired through consensus
(``RetireWorkers``), then removed through their node's Foreman, and the record
is dropped (``ForgetRetired``) once the removal is done. So a Director killed
halfway leaves a record its successor finishes, and a node that was down (or
restarted) in the middle comes back to a record that has it remove the worker
instead of using it; a retired worker is never recruited again. A superseded
Director's record is refused, so it removes nothing; the Foreman also refuses
to remove a newer epoch's worker.

A node that does not answer may be dead — or only cut off or paused, its
roles still running — so it is asked again, with a growing delay (up to
:data:`RETRY_CAP`), until every registered node has answered and every
retirement is done: the Director runs this beside its watch, again whenever
the directory changes (such a node registering again), and cancels it when
the epoch ends. (An old role left running cannot hand out a read version or
commit anything: its logs are locked. It is retired so it stops costing memory
and confusing clients.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from ..protocol import Layout, ListWorkers, RetiredWorker, WorkerInfo, WorkerRef, Workers
from .context import LOG, STORAGE, NodeInfo, RecoveryContext, Superseded

log = logging.getLogger(__name__)

#: The transaction roles, which live for one epoch.
ROLE_KINDS = frozenset({"sequencer", "commit_proxy", "resolver"})
#: How long a node's Foreman has to list its workers.
LIST_TIMEOUT = 0.5
#: The first and the longest delay before asking the nodes that did not answer again.
RETRY_FIRST = 0.2
RETRY_CAP = 5.0


def used_by(layout: Layout) -> set[str]:
    """Every worker and role id ``layout`` names."""
    ids = {layout.sequencer.id}
    ids.update(r.id for r in layout.proxies)
    ids.update(a.worker.id for a in layout.resolvers)
    ids.update(r.id for r in layout.logs)
    ids.update(r.id for team in layout.storage for r in team.members())
    return ids


def to_retire(
    workers: list[WorkerInfo], epoch: int, live: Layout, keep: Iterable[str] = ()
) -> list[WorkerRef]:
    """The workers and roles of older epochs that the live layout leaves behind."""
    used = used_by(live) | set(keep)
    return [
        info.ref
        for info in workers
        if info.epoch < epoch
        and info.ref.id not in used
        and info.ref.kind in ROLE_KINDS | {LOG, STORAGE}
    ]


async def retire(
    ctx: RecoveryContext,
    live: Layout,
    recovered_from: Layout | None = None,
    keep: Iterable[str] = (),
    *,
    recorded_hook: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """Retire what :func:`to_retire` finds on every node and the logs of the
    generation ``live`` recovered from (wherever they are), and finish the
    retirements recorded before; returns what was removed or stopped.

    Returns once every registered node answered and every retirement is done;
    until then it asks again (see the module docstring). ``recorded_hook``
    (tests) runs once the first retirement is recorded, before any removal.
    """
    done: list[str] = []
    delay = RETRY_FIRST
    while True:
        complete = await _sweep(ctx, live, recovered_from, keep, done, recorded_hook)
        if complete:
            return done
        recorded_hook = None
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_CAP)


async def stop_old_roles(ctx: RecoveryContext, live: Layout) -> list[str]:
    """Stop the older epochs' transaction roles at once, on the nodes that answer.

    Not delayed like the rest of the retirement: a client still waiting on an
    old commit proxy (whose push waits for a log on a stopped node) or an old
    sequencer is answered now, and moves to the live epoch. What is left is
    :func:`retire`'s.
    """

    async def on(node: NodeInfo) -> list[str]:  # node by node: a silent one delays no other
        answer = await ctx.call(
            WorkerRef("", "node", node.node, node.address), ListWorkers(), LIST_TIMEOUT
        )
        if not isinstance(answer, Workers):
            return []
        roles = [r for r in to_retire(answer.workers, ctx.epoch, live) if r.kind in ROLE_KINDS]
        return (await _stop_roles(ctx, roles))[0]

    answers = await asyncio.gather(*(on(n) for n in await ctx.nodes()), return_exceptions=True)
    stopped = [r for a in answers if not isinstance(a, BaseException) for r in a]
    if stopped:
        log.info("director: epoch %d stopped %s", ctx.epoch, ", ".join(stopped))
    return stopped


async def _list_workers(
    ctx: RecoveryContext,
) -> tuple[dict[str, set[str]], list[WorkerInfo], bool]:
    """Each answering node's worker ids, all their workers, and whether every node answered."""
    nodes = await ctx.nodes()
    answers = await asyncio.gather(
        *(
            ctx.call(WorkerRef("", "node", n.node, n.address), ListWorkers(), LIST_TIMEOUT)
            for n in nodes
        ),
        return_exceptions=True,
    )
    listed: dict[str, set[str]] = {
        n.node: {w.ref.id for w in a.workers}
        for n, a in zip(nodes, answers, strict=True)
        if isinstance(a, Workers)
    }
    workers = [w for a in answers if isinstance(a, Workers) for w in a.workers]
    return listed, workers, len(listed) == len(nodes)


async def _stop_roles(ctx: RecoveryContext, roles: list[WorkerRef]) -> tuple[list[str], bool]:
    """Stop ``roles`` in parallel: what was stopped, and whether all were."""
    results = await asyncio.gather(*(ctx.stop_role(r) for r in roles), return_exceptions=True)
    stopped = []
    for ref, result in zip(roles, results, strict=True):
        if isinstance(result, BaseException):  # asked again
            log.info("director: could not stop %s %s: %s", ref.kind, ref.id, result)
        else:
            stopped.append(f"{ref.kind} {ref.id}")
    return stopped, len(stopped) == len(roles)


async def _sweep(
    ctx: RecoveryContext,
    live: Layout,
    recovered_from: Layout | None,
    keep: Iterable[str],
    done: list[str],
    recorded_hook: Callable[[], Awaitable[None]] | None,
) -> bool:
    """One pass over the nodes; True if every node answered and nothing is left."""
    listed, workers, complete = await _list_workers(ctx)
    found = to_retire(workers, ctx.epoch, live, keep)
    roles = [r for r in found if r.kind in ROLE_KINDS]
    recorded = {w.id: w for w in await ctx.retiring()}
    used = used_by(live) | set(keep)
    persistent = {r.id: r for r in found if r.kind not in ROLE_KINDS}
    if recovered_from is not None:  # on a node that is down too: recorded all the same
        persistent.update((r.id, r) for r in recovered_from.logs if r.id not in used)
    fresh = [
        RetiredWorker(r.id, r.kind, r.node, r.address, ctx.epoch)
        for r in persistent.values()
        if r.id not in recorded
    ]
    if fresh:
        try:
            await ctx.retire_workers(fresh)  # recorded before anything is removed
        except Superseded as exc:
            log.info("director: not retiring (superseded): %s", exc)
            return True
        recorded.update((w.id, w) for w in fresh)
    if recorded_hook is not None:
        await recorded_hook()
    now, all_stopped = await _stop_roles(ctx, roles)
    complete = complete and all_stopped
    removed: list[str] = []
    for w in recorded.values():
        if w.id in used:
            continue  # a record naming a live worker is ignored, never obeyed
        if w.node not in listed:
            complete = False  # its node is silent: removed when it answers
            continue
        if w.id in listed[w.node]:
            try:
                await ctx.remove_worker(WorkerRef(w.id, w.kind, w.node, w.address))
            except Exception as exc:  # asked again
                log.info("director: could not remove %s %s: %s", w.kind, w.id, exc)
                complete = False
                continue
            now.append(f"{w.kind} {w.id}")
        removed.append(w.id)
    if removed:
        try:
            await ctx.forget_retired(removed)
        except Superseded as exc:
            log.info("director: removal not recorded (superseded): %s", exc)
            return True
    if now:
        log.info("director: epoch %d retired %s", ctx.epoch, ", ".join(now))
        done += now
    return complete
