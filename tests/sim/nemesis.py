"""The simulation's nemesis: one seeded schedule of faults per run.

:func:`make_schedule` turns a seed into a list of :class:`Fault` (when, what,
for how long, and a number that picks the target when the fault starts), and
:class:`Nemesis` applies them to a :class:`~.cluster.SimCluster`, one at a
time, each undone at its end:

- ``crash`` / ``crash-leader``: kill -9 a node (the leader's: its Director
  too), restart it at the end;
- ``power-loss``: every machine at once, unsynced writes lost on every disk;
- ``partition`` / ``partition-leader``: cut a minority (or the leader) off
  the other nodes, both ways, without resets; clients keep their links;
- ``one-way`` / ``one-way-leader``: what one node sends to another (or the
  leader to everyone) is lost, not what it hears;
- ``messages``: every message may be lost, duplicated (Raft) or delayed;
- ``skew``: one node's clock (its Raft timers, its versions) runs 3x slower
  or faster; ``stale-leader``: the leader's clock runs slow while it is cut
  off the other coordinators (only a read that asks them can tell);
- ``slow-disk``: one node's disk answers 5-50 ms late;
- ``disk-full`` / ``disk-failing``: one node's disk answers ENOSPC / EIO; the
  node may stop (a WAL error is fatal); at the end the fault is cleared and
  the node restarted: it must start cleanly or refuse with a clear error;
- ``hostile``: undecodable and forged Raft messages, requests a client may
  not send.

Besides the schedule, :func:`pause_hook` names (by seed) a recovery phase and
an epoch: that epoch's Director waits before that phase, and
:meth:`Nemesis.reap_paused` kills its node there — the Director killed in a
known phase, which the seed list covers for every phase.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

from bedrock_cp.director.phases import RecoveryPhase

from .cluster import SimCluster
from .invariants import probe_hostile

# (kind, weight)
KINDS: tuple[tuple[str, int], ...] = (
    ("crash", 3),
    ("crash-leader", 3),
    ("power-loss", 1),
    ("partition", 2),
    ("partition-leader", 2),
    ("one-way", 1),
    ("one-way-leader", 1),
    ("messages", 2),
    ("skew", 1),
    ("stale-leader", 2),
    ("slow-disk", 1),
    ("disk-full", 1),
    ("disk-failing", 1),
    ("hostile", 1),
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault: starts ``at`` seconds into the schedule, lasts ``duration``."""

    at: float
    kind: str
    duration: float
    #: Chooses the target(s) and the fault's strength when it starts.
    pick: int

    def describe(self) -> str:
        return f"{self.at:6.3f}s {self.kind} for {self.duration:.3f}s (pick {self.pick})"


def make_schedule(seed: int, seconds: float, only: tuple[str, ...] = ()) -> list[Fault]:
    """Faults for ``seconds`` of virtual time, from ``seed`` alone (of the kinds in
    ``only``, if given)."""
    unknown = set(only) - {k for k, _ in KINDS}
    if unknown:
        raise ValueError(f"no fault kinds {sorted(unknown)}")
    rng = random.Random(seed ^ 0xFA17)
    chosen = [(k, w) for k, w in KINDS if not only or k in only]
    kinds = [k for k, _ in chosen]
    weights = [w for _, w in chosen]
    faults = []
    t = rng.uniform(0.1, 0.5)
    while t < seconds:
        duration = min(rng.uniform(0.3, 1.5), max(0.2, seconds - t))
        faults.append(
            Fault(
                round(t, 3), rng.choices(kinds, weights)[0], round(duration, 3), rng.getrandbits(31)
            )
        )
        t += duration + rng.uniform(0.1, 0.6)
    return faults


def pause_hook(seed: int) -> tuple[str, int]:
    """(phase, epoch): the Director of that epoch pauses before that phase.

    Epoch 1 recovers a new cluster; epoch 2 is the first recovery of a stored
    layout (every phase does its work then). Consecutive seeds take
    consecutive phases, so any 22 seeds in a row cover every phase of both.
    """
    phases = [p.value for p in RecoveryPhase if p != RecoveryPhase.VALIDATE_LAYOUT]
    return phases[seed % len(phases)], 1 + (seed // len(phases)) % 2


class Nemesis:
    """Applies a schedule to a cluster; every action goes to ``trace``."""

    def __init__(
        self,
        cluster: SimCluster,
        schedule: list[Fault],
        trace: Callable[[str], None],
        *,
        paused_phase: tuple[str, int] | None = None,
    ) -> None:
        self.cluster = cluster
        self.schedule = schedule
        self.trace = trace
        self.paused_phase = paused_phase
        self.reaped: list[str] = []
        self.hostile_sent = 0

    # -- targets ---------------------------------------------------------------------

    def _node(self, fault: Fault) -> int:
        up = self.cluster.up or self.cluster.ids
        return up[fault.pick % len(up)]

    def _leader(self, fault: Fault) -> int:
        leader = self.cluster.leader()
        return leader if leader is not None else self._node(fault)

    def _minority(self, fault: Fault, first: int) -> list[int]:
        ids = self.cluster.ids
        size = max(1, (len(ids) - 1) // 2)
        others = [n for n in ids if n != first]
        rng = random.Random(fault.pick)
        return sorted({first, *rng.sample(others, size - 1)})

    # -- running ---------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for fault in self.schedule:
            delay = start + fault.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.apply(fault)

    async def apply(self, fault: Fault) -> None:
        c, kind = self.cluster, fault.kind
        net = c.net
        if kind in ("crash", "crash-leader"):
            node = self._leader(fault) if kind == "crash-leader" else self._node(fault)
            await self._for(fault, f"crash node {node}", lambda: c.crash(node), c.start(node))
        elif kind == "power-loss":
            await c.power_loss(fault.pick)
            await asyncio.sleep(fault.duration / 3)
            for i in c.ids:
                await c.start(i)
        elif kind in ("partition", "partition-leader"):
            first = self._leader(fault) if kind == "partition-leader" else self._node(fault)
            side = self._minority(fault, first)
            rest = [n for n in c.ids if n not in side]
            await self._for(fault, f"cut {side} off {rest}", lambda: net.isolate([side, rest]))
        elif kind in ("one-way", "one-way-leader"):
            src = self._leader(fault) if kind == "one-way-leader" else self._node(fault)
            others = [n for n in c.ids if n != src]
            dsts = others if kind == "one-way-leader" else [others[fault.pick // 7 % len(others)]]

            def mute() -> None:
                for dst in dsts:
                    net.cut(src, dst)

            await self._for(fault, f"one-way loss {src} -> {dsts}", mute)
        elif kind == "messages":
            strength = (fault.pick % 4 + 1) / 100

            def noisy() -> None:
                net.faults.drop = strength
                net.faults.duplicate = strength
                net.faults.delay = 2 * strength

            def quiet() -> None:
                net.faults.drop = net.faults.duplicate = net.faults.delay = 0.0

            await self._for(fault, f"drop/duplicate p={strength:.2f}", noisy, end=quiet)
        elif kind == "skew":
            node = self._node(fault)
            rate = 3.0 if fault.pick % 2 else 1 / 3
            clock = c.machines[node].clock
            await self._for(
                fault,
                f"node {node}'s clock runs at x{rate:.2f}",
                lambda: clock.set_rate(rate),
                end=lambda: clock.set_rate(1.0),
            )
        elif kind == "stale-leader":
            leader = self._leader(fault)
            rest = [n for n in c.ids if n != leader]
            clock = c.machines[leader].clock

            def stale() -> None:
                clock.set_rate(1 / 4)
                net.isolate([[leader], rest])

            def fresh() -> None:
                net.heal()
                clock.set_rate(1.0)

            await self._for(fault, f"leader {leader} cut off with a slow clock", stale, end=fresh)
        elif kind == "slow-disk":
            node = self._node(fault)
            executor = c.machines[node].executor
            latency = 0.005 + (fault.pick % 10) * 0.005

            def slow() -> None:
                executor.latency = latency

            def fast() -> None:
                executor.latency = 0.0

            await self._for(
                fault, f"node {node}'s disk takes {latency * 1000:.0f} ms", slow, end=fast
            )
        elif kind in ("disk-full", "disk-failing"):
            await self._disk_fault(fault, "full" if kind == "disk-full" else "failing")
        elif kind == "hostile":
            node = self._node(fault)
            target = c.node(node)
            if target is not None:
                self.trace(f"hostile: probes to node {node}")
                self.hostile_sent += await probe_hostile(
                    c.invariants.bad, target, lambda body: c.hostile_call(node, body)
                )
        else:
            raise ValueError(f"no fault named {kind!r}")

    async def _for(
        self,
        fault: Fault,
        what: str,
        begin: Callable[[], None],
        restart: object = None,
        *,
        end: Callable[[], None] | None = None,
    ) -> None:
        """``begin``, wait out the fault, then ``end`` (default: heal the network)
        and, for a crash, the restart coroutine."""
        self.trace(f"{fault.kind}: {what} for {fault.duration:.3f}s")
        begin()
        try:
            await asyncio.sleep(fault.duration)
        finally:
            (end or self.cluster.net.heal)()
            if asyncio.iscoroutine(restart):
                await restart
            self.trace(f"{fault.kind}: over")

    async def _disk_fault(self, fault: Fault, how: str) -> None:
        c = self.cluster
        node = self._node(fault)
        m = c.machines[node]
        self.trace(f"disk-{how}: node {node} for {fault.duration:.3f}s")
        c.invariants.expect_death(node)
        m.disk.set_fault(how)  # type: ignore[arg-type]
        try:
            await asyncio.sleep(fault.duration)
        finally:
            m.disk.set_fault(None)
            n = m.node
            if n is not None and n.fatal is not None:
                self.trace(f"disk-{how}: node {node} stopped itself ({n.fatal!r}); restart")
                c.crash(node)
                await c.start(node)

    async def reap_paused(self, stop: asyncio.Event) -> None:
        """Kill the node whose Director waits before the paused phase; restart it soon."""
        if self.paused_phase is None:
            return
        phase, epoch = self.paused_phase
        c = self.cluster
        while not stop.is_set():
            for i in c.up:
                node = c.node(i)
                director = node.recovery.director if node and node.recovery else None
                if (
                    director is not None
                    and director.ctx.epoch == epoch
                    and director.paused.is_set()
                ):
                    c.crash(i)
                    self.trace(f"reaper: crash node {i}, its epoch-{epoch} Director before {phase}")
                    self.reaped.append(f"node {i} before {phase} of epoch {epoch}")
                    await asyncio.sleep(0.2)
                    await c.start(i)
                    return
            await asyncio.sleep(0.005)
