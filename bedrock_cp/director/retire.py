"""Retirement: once an epoch is live, stop what older epochs left running.

Two things outlive the epoch that made them:

- **transaction roles** (sequencers, commit proxies, resolvers) of older epochs
  on nodes that are still up: an old sequencer would keep handing out read
  versions to a client that still holds the old layout;
- **orphan workers**: logs and storage replicas created by an attempt that was
  killed before it stored its layout (its node died, so no rollback ran). They
  belong to no layout and never will.

After the new layout is stored, the Director lists every registered node's
workers and retires, among those created for an older epoch:

- every role not in the live layout;
- every log in neither the live layout nor the layout it recovered from (the
  generation before that was copied into the live one; older ones and orphans
  hold nothing the live layout needs);
- in a new cluster (no layout was ever stored, so nothing was ever
  acknowledged), every storage replica not in the live layout. In a recovering
  cluster a replica outside the teams may be a spare that rejoins later.

A node that does not answer may be dead — or only cut off or paused, its
roles still running — so it is asked again, with a growing delay (up to
:data:`RETRY_CAP`), for as long as the epoch is live: the Director runs this
beside its watch and cancels it when the epoch ends. (An old role left running
cannot hand out a read version or commit anything: its logs are locked. It is
retired so it stops costing memory and confusing clients.) A retirement that
failed is retried the same way. The Foreman refuses to retire a newer epoch's
worker, so a Director superseded meanwhile can never remove its successor's
workers.
"""

from __future__ import annotations

import asyncio
import logging

from ..protocol import Layout, ListWorkers, WorkerInfo, WorkerRef, Workers
from .context import LOG, STORAGE, RecoveryContext

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
    ids.update(r.id for team in layout.storage for r in team.replicas)
    return ids


def to_retire(
    workers: list[WorkerInfo], epoch: int, live: Layout, recovered_from: Layout | None
) -> list[WorkerRef]:
    """The workers and roles of older epochs that the live layout leaves behind."""
    keep = used_by(live)
    if recovered_from is not None:
        keep.update(r.id for r in recovered_from.logs)
    out: list[WorkerRef] = []
    for info in workers:
        ref = info.ref
        if info.epoch >= epoch or ref.id in keep:
            continue
        if (
            ref.kind in ROLE_KINDS
            or ref.kind == LOG
            or (ref.kind == STORAGE and recovered_from is None)
        ):
            out.append(ref)
    return out


async def retire(ctx: RecoveryContext, live: Layout, recovered_from: Layout | None) -> list[str]:
    """Retire what :func:`to_retire` finds on every node; returns what was retired.

    Returns once every registered node answered and every retirement succeeded;
    until then it retries (see the module docstring).
    """
    retired: list[str] = []
    done: set[str] = set()  # nodes that answered and have nothing left to retire
    delay = RETRY_FIRST
    while True:
        nodes = [n for n in await ctx.nodes() if n.node not in done]
        if not nodes:
            return retired
        answers = await asyncio.gather(
            *(
                ctx.call(WorkerRef("", "node", n.node, n.address), ListWorkers(), LIST_TIMEOUT)
                for n in nodes
            ),
            return_exceptions=True,
        )
        now: list[str] = []
        for node, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, Workers) and await _retire_from(
                ctx, answer.workers, live, recovered_from, now
            ):
                done.add(node.node)
        if now:
            log.info("director: epoch %d retired %s", ctx.epoch, ", ".join(now))
            retired += now
        if all(n.node in done for n in nodes):
            return retired
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_CAP)


async def _retire_from(
    ctx: RecoveryContext,
    workers: list[WorkerInfo],
    live: Layout,
    recovered_from: Layout | None,
    retired: list[str],
) -> bool:
    """Retire what one node lists; True if nothing is left to retire there."""
    ok = True
    for ref in to_retire(workers, ctx.epoch, live, recovered_from):
        try:
            if ref.kind in ROLE_KINDS:
                await ctx.stop_role(ref)
            else:
                await ctx.remove_worker(ref)
        except Exception as exc:
            log.info("director: could not retire %s %s: %s", ref.kind, ref.id, exc)
            ok = False
            continue
        retired.append(f"{ref.kind} {ref.id}")
    return ok
