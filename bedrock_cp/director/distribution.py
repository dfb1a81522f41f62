"""Data distribution, minimal but real: replace storage replicas lost for good.

While an epoch is live, its Director checks every storage replica of the
layout, absent ones included (``Health``, a ping: nothing is written), every
:data:`INTERVAL`.
:class:`ReplicaHealth` remembers since when each has been silent, across the
Directors of one node. A replica silent for ``storage_replacement_s`` is
*lost*; a team that has lost one (or has fewer than ``storage_replicas``
replicas) gets a new replica:

1. a capable node that answers and holds no other replica of the team is
   chosen (the lost replica's own node qualifies if it is up: its replica is
   broken, e.g. a corrupt manifest), and a new storage worker is created there;
2. it is filled from a live replica of the team (``StorageFill``: a
   consistent snapshot in bounded chunks while commits go on; it joins the
   logs at the snapshot's version so they keep what it will need);
3. once filled, the lost replicas are retired (recorded through consensus) and
   the epoch ends: the next recovery drops them from the team and takes the
   filled replica in (a *fuller layout is started only once it can be built*).

A lost replica for which no node is available is retired all the same and the
epoch ends with a smaller team: a replica that is gone must not hold the logs
back for ever. When a node becomes available again, step 1 fills a new one.

An absent member (down when the layout was built) that answers again ends the
epoch too: the next recovery takes it back into its team (the logs kept what
it needs), rather than leaving it to hold them back while it stands still.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..protocol import (
    Done,
    Health,
    Layout,
    ListWorkers,
    RetiredWorker,
    StorageFill,
    StorageState,
    StorageStatus,
    StorageTeam,
    WorkerRef,
    Workers,
    served_range,
)
from .context import STORAGE, NodeInfo, RecoveryContext, Superseded
from .phases._calls import call_all, call_one

log = logging.getLogger(__name__)

#: Seconds between two checks of the storage replicas.
INTERVAL = 0.5
#: How long one replica (or a node's Foreman) has to answer a check.
CHECK_TIMEOUT = 0.5


@dataclass
class ReplicaHealth:
    """Since when each storage replica has been silent (monotonic seconds)."""

    silent_since: dict[str, float] = field(default_factory=dict)

    def seen(self, replica: str, alive: bool, now: float) -> None:
        if alive:
            self.silent_since.pop(replica, None)
        else:
            self.silent_since.setdefault(replica, now)

    def silent_for(self, replica: str, now: float) -> float:
        since = self.silent_since.get(replica)
        return 0.0 if since is None else now - since


@dataclass
class _Fill:
    team: StorageTeam
    target: WorkerRef
    source: WorkerRef
    unreachable_since: float | None = None


class Distribution:
    """Watches the storage teams of one live ``layout`` (see the module docstring)."""

    def __init__(self, ctx: RecoveryContext, layout: Layout, health: ReplicaHealth) -> None:
        self.ctx = ctx
        self.layout = layout
        self.health = health
        self._fill: _Fill | None = None

    @property
    def filling(self) -> set[str]:
        """The replica being filled now (retirement must leave it alone)."""
        return {self._fill.target.id} if self._fill is not None else set()

    async def tick(self) -> str | None:
        """One check; the reason to end the epoch (a fuller or smaller team can
        now be built), or None."""
        now = self.ctx.clock()
        if self._fill is not None:
            return await self._check_fill(now)
        p = self.ctx.parameters
        for team in self.layout.storage:
            members = team.members()
            answers = await call_all(self.ctx, [(r, Health(r.id)) for r in members], CHECK_TIMEOUT)
            alive = [r for r, a in zip(members, answers, strict=True) if isinstance(a, Done)]
            for r in members:
                self.health.seen(r.id, r in alive, now)
            if back := await self._back([r for r in team.absent if r in alive]):
                return back
            lost = self._lost(team, now)
            staying = [r for r in members if r not in lost]
            if not lost and len(staying) >= p.storage_replicas:
                continue
            sources = [r for r in alive if r in team.replicas]
            node = await self._eligible(staying)
            if node is None or not sources:
                if lost:
                    why = "no node to replace it on" if node is None else "no live source"
                    return await self._retire(lost, f"{why}; the team shrinks")
                continue
            await self._start_fill(team, node, sources[0], lost)
            return None
        return None

    async def _back(self, answering: list[WorkerRef]) -> str | None:
        """An absent member that answers again (its own status too, not only its
        node): the next recovery takes it back into its team."""
        answers = await call_all(
            self.ctx, [(r, StorageStatus(r.id)) for r in answering], CHECK_TIMEOUT
        )
        back = [
            r.id for r, a in zip(answering, answers, strict=True) if isinstance(a, StorageState)
        ]
        return f"storage {', '.join(back)} is back" if back else None

    def _lost(self, team: StorageTeam, now: float) -> list[WorkerRef]:
        limit = self.ctx.parameters.storage_replacement_s
        return [r for r in team.members() if self.health.silent_for(r.id, now) >= limit]

    async def _eligible(self, staying: list[WorkerRef]) -> NodeInfo | None:
        """A capable node that answers and holds no replica of the team that stays."""
        p = self.ctx.parameters
        taken = {r.node for r in staying}
        nodes = sorted(
            (
                n
                for n in await self.ctx.nodes()
                if STORAGE in n.capabilities
                and n.node not in p.excluded_nodes
                and n.node not in taken
            ),
            key=lambda n: n.node,
        )
        if not nodes:
            return None
        answers = await call_all(
            self.ctx,
            [(WorkerRef("", "node", n.node, n.address), ListWorkers()) for n in nodes],
            CHECK_TIMEOUT,
        )
        up = [n for n, a in zip(nodes, answers, strict=True) if isinstance(a, Workers)]
        return up[0] if up else None

    async def _start_fill(
        self, team: StorageTeam, node: NodeInfo, source: WorkerRef, lost: list[WorkerRef]
    ) -> None:
        ctx = self.ctx
        try:
            target = await ctx.create_worker(node, STORAGE, ctx.new_worker_id(STORAGE))
        except Exception as exc:
            log.info("director: cannot create a storage replica on node %s: %s", node.node, exc)
            return
        keys = served_range(team.begin, team.end)  # the system keys too, for the last team
        answer = await call_one(
            ctx, target, StorageFill(target.id, ctx.epoch, source, keys.begin, keys.end), 2.0
        )
        if answer != Done():
            log.info("director: storage %s refused to be filled: %s", target.id, answer)
            await self._remove(target)
            return
        self._fill = _Fill(team, target, source)
        replacing = f" to replace {', '.join(r.id for r in lost)}" if lost else ""
        log.info(
            "director: filling storage %s on node %s from %s%s",
            target.id,
            node.node,
            source.id,
            replacing,
        )

    async def _check_fill(self, now: float) -> str | None:
        fill = self._fill
        assert fill is not None
        answer = await call_one(self.ctx, fill.target, StorageStatus(fill.target.id), 2.0)
        if isinstance(answer, StorageState):
            fill.unreachable_since = None
            if answer.fill == "filled":
                lost = self._lost(fill.team, now)
                joined = f"storage {fill.target.id} filled from {fill.source.id}"
                return await self._retire(lost, joined) if lost else f"{joined}: it joins its team"
            if not answer.fill.startswith("failed"):
                return None  # still copying
            log.info("director: filling %s failed: %s", fill.target.id, answer.fill)
        else:
            if fill.unreachable_since is None:
                fill.unreachable_since = now
            if now - fill.unreachable_since < self.ctx.parameters.storage_replacement_s:
                return None
            log.info("director: %s being filled does not answer: %s", fill.target.id, answer)
        self._fill = None
        await self._remove(fill.target)
        return None

    async def _retire(self, lost: list[WorkerRef], why: str) -> str:
        records = [RetiredWorker(r.id, r.kind, r.node, r.address, self.ctx.epoch) for r in lost]
        names = ", ".join(r.id for r in lost)
        try:
            await self.ctx.retire_workers(records)
        except Superseded as exc:
            return f"superseded while retiring storage {names}: {exc}"
        return f"storage {names} lost for good ({why})"

    async def _remove(self, target: WorkerRef) -> None:
        try:
            await self.ctx.remove_worker(target)
        except Exception as exc:  # an orphan: the next retirement sweep removes it
            log.info("director: could not remove %s: %s", target.id, exc)
