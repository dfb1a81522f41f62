"""Invariants seen from outside: what polling every node's status can tell.

A :class:`NodeSample` is one node's answer to a status request (plus its RSS,
read by the poller); a :class:`StateSample` is a digest of the directory a node
holds at its applied index (a stale read of that node alone). Samples of one
node must arrive in the order they were taken; samples of different nodes may
interleave freely. :class:`Watch` checks them as they come (so a run can stop
at the first violation) and :func:`check_samples` is the same as a pure
function over a recorded sequence.

| kind | invariant |
| --- | --- |
| ``two-leaders`` | at most one leader per term (I1) |
| ``divergent-state`` | nodes that applied the same index hold the same directory (I2) |
| ``term-regressed`` | a node's term never goes back, across restarts too (I4) |
| ``commit-regressed`` | a node's commit index never goes back, across a crash too (I4) |
| ``applied-regressed`` | within one process, the applied index never goes back |
| ``epoch-regressed`` | within one process, the epoch a node has applied never goes back (I5) |
| ``director-epoch-shared`` | no two nodes ever ran a Director of the same epoch (I5) |
| ``rss-over-budget`` | a node's resident memory stays under a budget (I9, I10) |

The applied index and epoch are checked within one process lifetime only: a
restarted node rebuilds its state machine by replaying its snapshot and log, so
what it reports just after a restart may trail what it reported before the
crash. Term and commit index are persisted, and are checked across restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .result import Anomaly, CheckResult, result


@dataclass(frozen=True, slots=True)
class NodeSample:
    time: float
    node: int
    pid: int
    role: str
    term: int
    commit_index: int
    applied_index: int
    epoch: int
    #: The epoch of the Director this node runs or last ran (0: never ran one).
    director_epoch: int = 0
    director_state: str = ""
    rss_bytes: int | None = None

    def describe(self) -> str:
        return (
            f"node {self.node} (pid {self.pid}) at {self.time:.3f} s: {self.role} "
            f"term {self.term} commit {self.commit_index} applied {self.applied_index} "
            f"epoch {self.epoch}"
        )


@dataclass(frozen=True, slots=True)
class StateSample:
    """A node's directory at ``applied_index``, as a digest of its records."""

    time: float
    node: int
    applied_index: int
    digest: str


class Watch:
    """Checks samples as they arrive; :meth:`add` returns the new anomalies."""

    def __init__(self, *, rss_budget: int | None = None) -> None:
        self.rss_budget = rss_budget
        self.anomalies: list[Anomaly] = []
        self.samples = 0
        self._leaders: dict[int, NodeSample] = {}
        self._last: dict[int, NodeSample] = {}
        self._director_node: dict[int, NodeSample] = {}
        self._max_rss: dict[int, int] = {}
        self._states: dict[int, StateSample] = {}

    def add(self, s: NodeSample) -> list[Anomaly]:
        self.samples += 1
        found: list[Anomaly] = []

        def bad(kind: str, text: str) -> None:
            found.append(Anomaly(kind, text))

        if s.role == "leader":
            other = self._leaders.setdefault(s.term, s)
            if other.node != s.node:
                bad("two-leaders", f"term {s.term}: {other.describe()}; {s.describe()}")
        last = self._last.get(s.node)
        if last is not None:
            if s.term < last.term:
                bad("term-regressed", f"{last.describe()}; then {s.describe()}")
            if s.commit_index < last.commit_index:
                bad("commit-regressed", f"{last.describe()}; then {s.describe()}")
            if s.pid == last.pid:
                if s.applied_index < last.applied_index:
                    bad("applied-regressed", f"{last.describe()}; then {s.describe()}")
                if s.epoch < last.epoch:
                    bad("epoch-regressed", f"{last.describe()}; then {s.describe()}")
        self._last[s.node] = s
        if s.director_epoch:
            first = self._director_node.setdefault(s.director_epoch, s)
            if first.node != s.node:
                bad(
                    "director-epoch-shared",
                    f"epoch {s.director_epoch}: node {first.node} ran its Director at "
                    f"{first.time:.3f} s, node {s.node} at {s.time:.3f} s",
                )
        if s.rss_bytes is not None:
            self._max_rss[s.node] = max(self._max_rss.get(s.node, 0), s.rss_bytes)
            if self.rss_budget is not None and s.rss_bytes > self.rss_budget:
                bad(
                    "rss-over-budget",
                    f"{s.describe()}: RSS {s.rss_bytes / 2**20:.0f} MiB, "
                    f"budget {self.rss_budget / 2**20:.0f} MiB",
                )
        self.anomalies.extend(found)
        return found

    def add_state(self, s: StateSample) -> list[Anomaly]:
        self.samples += 1
        first = self._states.setdefault(s.applied_index, s)
        if first.digest == s.digest:
            return []
        found = [
            Anomaly(
                "divergent-state",
                f"at applied index {s.applied_index} node {first.node} held directory "
                f"{first.digest} ({first.time:.3f} s) and node {s.node} {s.digest} "
                f"({s.time:.3f} s)",
            )
        ]
        self.anomalies.extend(found)
        return found

    def add_all(self, samples: Iterable[NodeSample | StateSample]) -> list[Anomaly]:
        return [
            a
            for s in samples
            for a in (self.add_state(s) if isinstance(s, StateSample) else self.add(s))
        ]

    def result(self, max_reported: int = 20) -> CheckResult:
        return result(
            "invariants (I1 I2 I4 I5 I9)",
            self.anomalies[:max_reported],
            samples=self.samples,
            terms_with_a_leader=len(self._leaders),
            director_epochs=len(self._director_node),
            indexes_compared=len(self._states),
            max_rss_mib=round(max(self._max_rss.values(), default=0) / 2**20, 1),
        )


def check_samples(
    samples: Sequence[NodeSample | StateSample], *, rss_budget: int | None = None
) -> CheckResult:
    """:class:`Watch` over a recorded sequence of samples."""
    watch = Watch(rss_budget=rss_budget)
    watch.add_all(samples)
    return watch.result()
