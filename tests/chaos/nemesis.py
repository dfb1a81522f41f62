"""The nemesis: a seeded schedule of faults, applied to a :class:`ChaosCluster`.

:func:`make_schedule` turns a seed into a list of :class:`Fault` — when, what,
for how long, and a number that picks the target — so ``CHAOS_SEED=N``
replays the same schedule (targets named "leader" are resolved when the fault
starts, from what the :class:`~.cluster.Monitor` last saw). One fault at a
time, a new one every few seconds, each undone at its end:

- ``kill`` / ``kill-leader``: kill -9 a node / the leader's node (and so its
  Director); restart it at the end;
- ``pause`` / ``pause-leader``: SIGSTOP, then SIGCONT at the end (a zombie
  that comes back believing it leads);
- ``kill-follower`` / ``pause-follower``: the same on a node that does not
  lead (not drawn by :func:`make_schedule`; for schedules that name the
  target's role, as the availability bench does);
- ``partition`` / ``partition-leader``: cut a minority (or the leader) off,
  without resets;
- ``one-way`` / ``one-way-leader``: what one node sends to another (or all the
  leader sends) is lost, but not what it hears;
- ``latency``: 1-5 ms added to every link;
- ``drops``: links reset connections at random;
- ``kill-recovering``: kill the leader, then the next leader while its
  Director still recovers.

Any fault may also run with 1-5 ms of latency on every link. Besides the
schedule, :func:`pause_hook` picks (by seed) a recovery phase: the node
environment ``BEDROCK_DIRECTOR_PAUSE_BEFORE=phase@2`` makes the Director of
epoch 2 wait before it, and :meth:`Nemesis.reap_paused` kills that Director's
node when it gets there — the Director killed mid-recovery in a known phase.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

from bedrock_cp.director.phases import RecoveryPhase

from ..checking import History
from .cluster import ChaosCluster, Monitor

# (kind, weight)
KINDS: tuple[tuple[str, int], ...] = (
    ("kill", 2),
    ("kill-leader", 2),
    ("pause", 1),
    ("pause-leader", 2),
    ("partition", 2),
    ("partition-leader", 2),
    ("one-way", 1),
    ("one-way-leader", 1),
    ("latency", 1),
    ("drops", 1),
    ("kill-recovering", 1),
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault: starts ``at`` seconds into the schedule, lasts ``duration``."""

    at: float
    kind: str
    duration: float
    #: Chooses the target(s) among the candidates when the fault starts.
    pick: int
    #: Also add 1-5 ms of latency to every link meanwhile.
    latency: bool

    def describe(self) -> str:
        extra = " +latency" if self.latency else ""
        return f"{self.at:6.1f}s {self.kind}{extra} for {self.duration:.1f}s (pick {self.pick})"


def make_schedule(seed: int, seconds: float, only: tuple[str, ...] = ()) -> list[Fault]:
    """Faults for ``seconds`` of chaos, from ``seed`` alone (of the kinds in
    ``only``, if given)."""
    unknown = set(only) - {k for k, _ in KINDS}
    if unknown:
        raise ValueError(f"no fault kinds {sorted(unknown)}")
    rng = random.Random(seed)
    chosen = [(k, w) for k, w in KINDS if not only or k in only]
    kinds = [k for k, _ in chosen]
    weights = [w for _, w in chosen]
    faults = []
    t = rng.uniform(0.5, 1.5)
    while t < seconds:
        duration = min(rng.uniform(1.0, 4.0), max(0.5, seconds - t))
        kind = rng.choices(kinds, weights)[0]
        faults.append(
            Fault(round(t, 3), kind, round(duration, 3), rng.getrandbits(31), rng.random() < 0.25)
        )
        t += duration + rng.uniform(0.5, 2.5)
    return faults


def pause_hook(seed: int) -> tuple[str, int]:
    """(phase, epoch): the Director of that epoch pauses before that phase."""
    phases = [p.value for p in RecoveryPhase if p != RecoveryPhase.VALIDATE_LAYOUT]
    return random.Random(seed ^ 0x5EED).choice(phases), 2


class Nemesis:
    """Applies a schedule; every action is logged and recorded in the history."""

    def __init__(
        self,
        chaos: ChaosCluster,
        monitor: Monitor,
        history: History,
        schedule: list[Fault],
        *,
        paused_phase: tuple[str, int] | None = None,
    ) -> None:
        self.chaos = chaos
        self.monitor = monitor
        self.history = history
        self.schedule = schedule
        self.paused_phase = paused_phase
        self.log: list[str] = []
        self.reaped: list[str] = []

    def note(self, text: str) -> None:
        self.log.append(f"{self.history.now():8.3f}s {text}")

    # -- targets ------------------------------------------------------------------------

    def _live(self) -> list[int]:
        return [n for n in self.chaos.nodes if n not in self.chaos.down | self.chaos.paused]

    def _node(self, fault: Fault) -> int:
        live = self._live() or self.chaos.nodes
        return live[fault.pick % len(live)]

    def _leader(self, fault: Fault) -> int:
        leader = self.monitor.leader()
        if leader is None or leader not in self._live():
            return self._node(fault)
        return leader

    def _follower(self, fault: Fault) -> int:
        leader = self.monitor.leader()
        live = [n for n in self._live() if n != leader]
        return live[fault.pick % len(live)] if live else self._node(fault)

    def _target(self, fault: Fault) -> int:
        """The node a process fault hits, by the role its kind names."""
        if fault.kind.endswith("-leader"):
            return self._leader(fault)
        if fault.kind.endswith("-follower"):
            return self._follower(fault)
        return self._node(fault)

    def _minority(self, fault: Fault, first: int) -> set[int]:
        size = (len(self.chaos.nodes) - 1) // 2
        others = [n for n in self.chaos.nodes if n != first]
        rng = random.Random(fault.pick)
        return {first, *rng.sample(others, size - 1)} if size > 1 else {first}

    # -- running ------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for fault in self.schedule:
            delay = start + fault.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.apply(fault)

    async def apply(self, fault: Fault) -> str:
        """Inflict ``fault``, wait out its duration, undo it; return what was done."""
        op = self.history.invoke("nemesis", "fault", (fault.kind, fault.duration))
        if fault.latency:
            self.chaos.latency(0.001, 0.005)
        try:
            what = await self._inflict(fault)
        finally:
            if fault.latency:
                self.chaos.latency(0.0, 0.0)
        op.ok(what)
        return what

    async def _inflict(self, fault: Fault) -> str:
        chaos, kind = self.chaos, fault.kind
        if kind in ("kill", "kill-leader", "kill-follower"):
            node = self._target(fault)
            return await self._for(
                fault, f"kill -9 node {node}", lambda: chaos.kill(node), lambda: chaos.restart(node)
            )
        if kind in ("pause", "pause-leader", "pause-follower"):
            node = self._target(fault)
            return await self._for(
                fault, f"SIGSTOP node {node}", lambda: chaos.pause(node), lambda: chaos.resume(node)
            )
        if kind in ("partition", "partition-leader"):
            first = self._leader(fault) if kind == "partition-leader" else self._node(fault)
            side = self._minority(fault, first)
            return await self._for(
                fault, f"cut off {sorted(side)}", lambda: chaos.cut_off(side), chaos.heal_network
            )
        if kind == "one-way":
            src = self._node(fault)
            others = [n for n in chaos.nodes if n != src]
            dst = others[fault.pick // 7 % len(others)]
            return await self._for(
                fault,
                f"one-way loss {src} -> {dst}",
                lambda: chaos.one_way(src, dst),
                chaos.heal_network,
            )
        if kind == "one-way-leader":
            src = self._leader(fault)

            def mute() -> None:
                for dst in chaos.nodes:
                    if dst != src:
                        chaos.one_way(src, dst)

            return await self._for(
                fault, f"one-way loss {src} -> everyone", mute, chaos.heal_network
            )
        if kind == "latency":
            return await self._for(
                fault,
                "1-5 ms on every link",
                lambda: chaos.latency(0.001, 0.005),
                lambda: chaos.latency(0.0, 0.0),
            )
        if kind == "drops":
            p = 0.01 + (fault.pick % 5) / 100
            return await self._for(
                fault,
                f"resets with p={p:.2f} per chunk",
                lambda: chaos.drops(p, fault.pick),
                chaos.heal_network,
            )
        if kind == "kill-recovering":
            return await self._kill_recovering(fault)
        raise ValueError(f"no fault named {kind!r}")

    async def _for(
        self, fault: Fault, what: str, start: Callable[[], None], end: Callable[[], None]
    ) -> str:
        self.note(f"{fault.kind}: {what} for {fault.duration:.1f}s")
        start()
        try:
            await asyncio.sleep(fault.duration)
        finally:
            end()
            self.note(f"{fault.kind}: healed ({what})")
        return what

    async def _kill_recovering(self, fault: Fault) -> str:
        """Kill the leader; catch the next one while its Director recovers; kill it too."""
        chaos, monitor = self.chaos, self.monitor
        first = self._leader(fault)
        epoch = monitor.max_epoch()
        chaos.kill(first)
        self.note(f"kill-recovering: kill -9 node {first} (leader, epoch {epoch})")
        second: int | None = None
        phase = ""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while loop.time() < deadline and second is None:  # bounded: 5 s of fast polls
            await monitor.poll_once()
            for node, latest in monitor.latest.items():
                rec = latest.recovery
                if (
                    node != first
                    and node not in chaos.down
                    and latest.reply.role == "leader"
                    and int(rec.get("epoch") or 0) > epoch
                ):
                    second, phase = node, f"{rec.get('state')} at {rec.get('phase')}"
                    break
        if len(chaos.nodes) <= 3:
            chaos.restart(first)  # so that killing the second leaves a majority
        if second is None:
            self.note("kill-recovering: no new leader within 5 s; node restarted")
            await asyncio.sleep(fault.duration)
            chaos.restart(first)
            return f"killed {first}; no new leader seen"
        chaos.kill(second)
        self.note(f"kill-recovering: kill -9 node {second}, its Director {phase}")
        try:
            await asyncio.sleep(fault.duration)
        finally:
            chaos.restart(first)
            chaos.restart(second)
            self.note(f"kill-recovering: restarted {sorted({first, second})}")
        return f"killed {first}, then {second} ({phase})"

    async def reap_paused(self, stop: asyncio.Event) -> None:
        """Kill the node whose Director waits at the paused phase; restart it a second later."""
        if self.paused_phase is None:
            return
        phase, epoch = self.paused_phase
        while not stop.is_set():
            for node, latest in list(self.monitor.latest.items()):
                rec = latest.recovery
                if (
                    node not in self.chaos.down
                    and rec.get("state") == "recovering"
                    and rec.get("phase") == phase
                    and int(rec.get("epoch") or 0) == epoch
                ):
                    self.chaos.kill(node)
                    self.note(f"reaper: kill -9 node {node}, its epoch-{epoch} Director at {phase}")
                    self.reaped.append(f"node {node} at {phase}")
                    await asyncio.sleep(1.0)
                    self.chaos.restart(node)
                    self.note(f"reaper: restarted node {node}")
                    return
            await asyncio.sleep(0.05)
