"""Invariants checked while a simulation runs, from inside the nodes and the network.

:class:`Invariants` watches every incarnation of every node: it stands between
each node's Raft runner and its coordinator (a :class:`Recorder` is the
runner's host, so it sees every role change and every applied entry) and
between the coordinator and its Director host (every epoch begun), and it is
an observer of the simulated network (every request served and its answer).
Each check raises nothing: a violation is an :class:`~tests.checking.Anomaly`
with the virtual time, kept in :attr:`Invariants.anomalies`.

- ``two-leaders``: at most one leader per term (I1);
- ``divergent-apply``: the same command at the same index on every node, in
  every incarnation (I2);
- ``term-regressed`` / ``vote-changed``: a node's term never goes back and its
  vote in a term never changes, across restarts and power loss (I4);
- ``commit-regressed``: a node's commit index never goes back across a
  process crash (I4);
- ``epoch-not-increasing`` / ``epoch-shared``: every epoch begun is above every
  earlier one, and only one node runs its Director (I5);
- ``stale-epoch-accepted``: a worker that accepted a request of epoch e never
  accepts one of an older epoch that arrives afterwards (I6);
- ``hostile-accepted`` / ``node-died``: hostile input is refused, and no node
  stops itself unless its disk was made to fail (I9).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from bedrock_cp import protocol
from bedrock_cp._native import native
from bedrock_cp.coordinator.service import Coordinator, EpochListener
from bedrock_cp.node import Node

from ..checking import Anomaly

#: Requests whose success means the worker accepted the sender's epoch, and
#: the answers that mean it did.
_FENCED: dict[type, tuple[type, ...]] = {
    protocol.LogPush: (protocol.LogPushed,),
    protocol.LogLock: (protocol.LogLocked,),
    protocol.LogRecover: (protocol.LogRecovered,),
    protocol.StorageLock: (protocol.StorageState,),
}


class Recorder:
    """The Raft runner's host in the simulation: the coordinator, watched."""

    def __init__(self, inv: Invariants, node: int, coordinator: Coordinator) -> None:
        self.inv = inv
        self.node = node
        self.coordinator = coordinator

    def send_raft(self, to: int, data: bytes) -> None:
        self.coordinator.send_raft(to, data)

    def apply(self, entry: native.Entry) -> None:
        self.inv.applied(self.node, entry)
        self.coordinator.apply(entry)

    def restore(self, snapshot: native.Snapshot) -> None:
        self.coordinator.restore(snapshot)

    def on_read_state(self, index: int, ctx: bytes) -> None:
        self.coordinator.on_read_state(index, ctx)

    def on_soft_state(self, leader_id: int, role: str) -> None:
        if role == "leader":
            self.inv.leads(self.node, self.coordinator.runner.consensus.term)
        self.coordinator.on_soft_state(leader_id, role)

    def snapshot_data(self) -> bytes:
        return self.coordinator.snapshot_data()


class EpochRecorder:
    """The coordinator's epoch listener: the Director host, watched."""

    def __init__(self, inv: Invariants, node: int, inner: EpochListener) -> None:
        self.inv = inv
        self.node = node
        self.inner = inner

    def epoch_begun(self, epoch: int) -> None:
        self.inv.epoch_begun(self.node, epoch)
        self.inner.epoch_begun(epoch)

    def leadership_lost(self) -> None:
        self.inner.leadership_lost()

    def directory_changed(self) -> None:
        self.inner.directory_changed()


@dataclass
class _Persisted:
    """What a node persisted as far as we saw: term, vote per term, commit."""

    term: int = 0
    votes: dict[int, int] = field(default_factory=dict)
    commit: int = 0


class Invariants:
    """See the module docstring. ``now`` is the virtual clock."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.anomalies: list[Anomaly] = []
        self.leaders: dict[int, int] = {}
        self._applied: dict[int, tuple[int, bytes, int]] = {}
        self._persisted: dict[int, _Persisted] = {}
        self._epochs: list[tuple[int, int]] = []
        # Worker id -> (highest epoch it accepted a fenced request of, when answered).
        self._fence: dict[str, tuple[int, float]] = {}
        self._expected_deaths: set[int] = set()
        #: Counts for the report.
        self.entries_compared = 0
        self.requests_seen = 0

    def bad(self, kind: str, text: str) -> None:
        self.anomalies.append(Anomaly(kind, f"at {self.now():.3f} s: {text}"))

    # -- attaching -------------------------------------------------------------------

    def attach(self, node_id: int, node: Node) -> None:
        """Watch a freshly started incarnation of ``node_id``."""
        coordinator = node.coordinator
        assert coordinator is not None and node.recovery is not None
        coordinator.runner.host = Recorder(self, node_id, coordinator)
        coordinator.epoch_listener = EpochRecorder(self, node_id, node.recovery)
        self.sample(node_id, node)

    def crashed(self, node_id: int, *, power_lost: bool) -> None:
        """A power loss may take the commit index back (only term and vote are
        synced before they are acted on); a crash may not."""
        if power_lost and node_id in self._persisted:
            self._persisted[node_id].commit = 0

    def expect_death(self, node_id: int) -> None:
        """The node's disk was made to fail: it may stop itself."""
        self._expected_deaths.add(node_id)

    # -- I1, I2, I5 from the hooks --------------------------------------------------

    def leads(self, node: int, term: int) -> None:
        other = self.leaders.setdefault(term, node)
        if other != node:
            self.bad("two-leaders", f"term {term}: node {other} and node {node} both led")

    def applied(self, node: int, entry: native.Entry) -> None:
        digest = hashlib.blake2b(entry.data, digest_size=12).digest()
        seen = self._applied.setdefault(entry.index, (entry.term, digest, node))
        self.entries_compared += 1
        if seen[:2] != (entry.term, digest):
            self.bad(
                "divergent-apply",
                f"index {entry.index}: node {seen[2]} applied an entry of term {seen[0]}, "
                f"node {node} one of term {entry.term}"
                + (" with other data" if seen[0] == entry.term else ""),
            )

    def epoch_begun(self, node: int, epoch: int) -> None:
        for earlier, by in self._epochs:
            if earlier == epoch:
                self.bad("epoch-shared", f"epoch {epoch} begun by node {by} and node {node}")
            elif earlier > epoch:
                self.bad(
                    "epoch-not-increasing",
                    f"node {node} began epoch {epoch} after node {by} began {earlier}",
                )
        self._epochs.append((epoch, node))

    @property
    def epochs(self) -> list[int]:
        return [e for e, _ in self._epochs]

    # -- I4 by sampling --------------------------------------------------------------

    def sample(self, node_id: int, node: Node) -> None:
        """Compare what ``node`` holds now with what it held before.

        Only while no Ready is pending: then its term, vote and commit are the
        ones on its disk (a term it learned but has not persisted yet may be
        lost in a crash, and nobody acted on it). Not once its Raft loop
        stopped (a failed persist): the Ready it could not write is still out,
        so no Ready looks pending while its memory holds what never reached
        the disk.
        """
        if node.closed or node.fatal is not None:
            return
        coordinator = node.coordinator
        assert coordinator is not None
        consensus = coordinator.runner.consensus
        if consensus.has_ready():
            return
        st = consensus.status()
        seen = self._persisted.setdefault(node_id, _Persisted())
        if st["term"] < seen.term:
            self.bad("term-regressed", f"node {node_id}: term {st['term']} after {seen.term}")
        vote = seen.votes.get(st["term"])
        if st["vote"] and vote and vote != st["vote"]:
            self.bad(
                "vote-changed",
                f"node {node_id} voted for {vote}, then {st['vote']} in term {st['term']}",
            )
        if st["vote"]:
            seen.votes[st["term"]] = st["vote"]
        if st["commit"] < seen.commit:
            self.bad(
                "commit-regressed", f"node {node_id}: commit {st['commit']} after {seen.commit}"
            )
        seen.term = max(seen.term, st["term"])
        seen.commit = max(seen.commit, st["commit"])

    def check_alive(self, node_id: int, node: Node) -> None:
        if node.fatal is not None and node_id not in self._expected_deaths:
            self.bad("node-died", f"node {node_id} stopped itself: {node.fatal!r}")
            self._expected_deaths.add(node_id)  # reported once

    # -- I6 from the network ---------------------------------------------------------

    def on_request(
        self, src: object, dst: int, body: bytes, answer: bytes | None, arrived: float
    ) -> None:
        """The simulated network's observer: every request served (``arrived`` at
        the node then), and its answer. A request is checked against the fences
        answered before it arrived: one in flight may finish after a newer lock."""
        self.requests_seen += 1
        if answer is None:
            return
        try:
            req = protocol.decode_request(body)
        except Exception:
            return  # hostile bytes: the node refused them
        accepted = _FENCED.get(type(req))
        if accepted is None:
            return
        try:
            reply = protocol.decode_response(answer)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # a transport error
        if not isinstance(reply, accepted):
            return
        worker: str = getattr(req, "worker")  # noqa: B009 - every fenced request names one
        epoch: int = getattr(req, "epoch")  # noqa: B009
        fence = self._fence.get(worker)
        if fence is not None and epoch < fence[0] and arrived > fence[1]:
            self.bad(
                "stale-epoch-accepted",
                f"{worker} on node {dst} accepted {type(req).__name__} of epoch {epoch} "
                f"after accepting epoch {fence[0]} at {fence[1]:.3f} s",
            )
        if fence is None or epoch > fence[0]:
            self._fence[worker] = (epoch, self.now())


async def probe_hostile(
    bad: Callable[[str, str], None],
    node: Node,
    call: Callable[[protocol.Request], Awaitable[protocol.Response]],
) -> int:
    """Hostile input to one node (I9); returns how many probes were sent.

    Undecodable and forged Raft messages, and requests a client may not send
    (a lock of every log at a huge epoch, a layout, a worker removal, another
    node's registration), must be dropped or refused, and the node must stay up.
    """
    sent = 0
    peer = 1 if node.id != 1 else 2
    node._on_raft(peer, [b"\x00garbage" * 3])
    node._on_raft(peer, [bytes([2, 7]) + (2**62).to_bytes(8, "little") * 6])
    sent += 2
    for body in (
        protocol.LogLock("log-any", 2**62),
        protocol.StoreLayoutRequest(2**62, b"not a layout", 7, 1),
        protocol.RemoveWorker("log-any", 2**62),
        protocol.RegisterNodeRequest("other-node", "10.0.0.9:1", [], [], 7, 1),
    ):
        reply = await call(body)
        sent += 1
        if not isinstance(reply, protocol.Unauthorized | protocol.Rejected | protocol.NewerEpoch):
            bad(
                "hostile-accepted",
                f"node {node.id}: {type(body).__name__} from a client answered {reply}",
            )
    return sent
