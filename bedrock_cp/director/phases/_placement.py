"""Placement of new workers: one per node (a node is one failure domain).

Two logs (or two replicas of a team) on one node would die together, so each
new worker of a kind goes to a different capable node. While fewer capable
nodes are registered than the cluster is expected to have (its coordinator
count), recruitment stalls and waits for them — placing everything on the
first node to register would make that node a single point of failure.
"""

from __future__ import annotations

from ...protocol import WorkerRef
from ..attempt import Attempt, Stall
from ..context import NodeInfo, RecoveryContext
from ._calls import until_enough

#: The least time a node has to create a worker once enough others did: a node
#: just restarted is slow at first (connections, a new WAL), and cutting it off
#: leaves a degraded layout, so this is longer than a phase's grace; but under
#: the Director's health timeout (0.25 s): a node that does not answer within
#: it (stopped, or restarting and not serving yet) costs a recovery no more
#: than a dead component does, and its return regrows the layout.
CREATE_GRACE = 0.2


async def capable(ctx: RecoveryContext, kind: str) -> list[NodeInfo]:
    """Registered, not excluded nodes offering ``kind``, in a stable order."""
    nodes = await ctx.nodes()
    return sorted(
        (
            n
            for n in nodes
            if kind in n.capabilities and n.node not in ctx.parameters.excluded_nodes
        ),
        key=lambda n: n.node,
    )


def least(attempt: Attempt, ctx: RecoveryContext, count: int) -> int:
    """The fewest of ``count`` wanted workers of a kind a layout may have: a new
    cluster all it can place (``min(count, expected_nodes)``), a recovering
    one a majority of that."""
    target = min(count, ctx.parameters.expected_nodes)
    return target if attempt.new_cluster else target // 2 + 1


async def create_round_robin(
    attempt: Attempt, ctx: RecoveryContext, kind: str, count: int
) -> list[WorkerRef]:
    """Create up to ``count`` workers of ``kind``, each on a different capable node
    (in parallel), recording each at once (a rollback removes it).

    A new cluster waits until ``min(count, expected_nodes)`` capable nodes have
    registered. A recovering cluster uses the capable nodes that answer (a dead
    node may still be registered): it needs a majority of ``min(count,
    expected_nodes)``, so a cluster that lost a minority of its nodes recovers.
    """
    nodes = await capable(ctx, kind)
    if not nodes:
        raise Stall(f"no node can host a {kind} (none registered with the {kind!r} capability)")
    minimum = least(attempt, ctx, count)
    if attempt.new_cluster and len(nodes) < minimum:
        raise Stall(
            f"waiting for {minimum} nodes able to host a {kind}; registered: "
            f"{', '.join(n.node for n in nodes)}"
        )
    refs: list[WorkerRef] = []
    problems: list[str] = []

    async def create(node: NodeInfo) -> bool:
        try:
            ref = await ctx.create_worker(node, kind, ctx.new_worker_id(kind))
        except Exception as exc:
            problems.append(f"{node.node}: {exc}")
            return False
        attempt.created_workers.append(ref)  # at once: a rollback removes it
        refs.append(ref)
        return True

    # On every node at once (each creation waits on that node's disk); a node
    # that fails is replaced by the next capable one. Once enough exist, a
    # node that stays silent (stopped, no reset) is not waited for beyond
    # CREATE_GRACE: it is replaced too (a worker it still creates later is an
    # orphan, retired by a later epoch).
    # Nodes found silent earlier in this attempt only if the others are not enough.
    for group in (
        [n for n in nodes if n.node not in attempt.silent],
        [n for n in nodes if n.node in attempt.silent],
    ):
        pending = group
        while pending and len(refs) < count:
            batch, pending = pending[: count - len(refs)], pending[count - len(refs) :]
            done = await until_enough(
                [create(node) for node in batch],
                need=minimum - len(refs),
                ok=bool,
                grace=CREATE_GRACE,
            )
            silent = [n.node for n, d in zip(batch, done, strict=True) if d is None]
            problems += [f"{node}: no answer in time" for node in silent]
        if len(refs) >= minimum:
            break
    refs.sort(key=lambda r: r.node)
    if len(refs) < minimum:
        raise Stall(
            f"only {len(refs)} {kind} worker(s) created, {minimum} needed; "
            f"failed: {'; '.join(problems) or 'no other capable node'}"
        )
    return refs
