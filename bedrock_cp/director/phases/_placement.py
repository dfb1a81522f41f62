"""Round-robin placement of new workers over the nodes able to host them."""

from __future__ import annotations

from ...dataplane.types import WorkerRef
from ..attempt import Attempt, Stall
from ..context import NodeInfo, RecoveryContext


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


async def create_round_robin(
    attempt: Attempt, ctx: RecoveryContext, kind: str, count: int
) -> list[WorkerRef]:
    """Create ``count`` workers of ``kind`` over the capable nodes, recording each at once."""
    nodes = await capable(ctx, kind)
    if not nodes:
        raise Stall(f"no node can host a {kind} (none registered with the {kind!r} capability)")
    refs: list[WorkerRef] = []
    for i in range(count):
        node = nodes[i % len(nodes)]
        worker_id = ctx.new_worker_id(kind)
        try:
            ref = await ctx.create_worker(node, kind, worker_id)
        except Exception as exc:
            raise Stall(f"could not create {kind} {worker_id} on {node.node}: {exc}") from exc
        attempt.created_workers.append(ref)
        refs.append(ref)
    return refs
