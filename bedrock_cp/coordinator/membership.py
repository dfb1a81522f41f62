"""Membership of the coordinators' Raft group: adding and removing a coordinator.

Adding a coordinator commits its address, then adds it as a Raft *learner* (it
receives the log but does not count toward a quorum), waits until its log is
within :data:`CATCH_UP_DISTANCE` entries of the leader's (at most
``learner_catch_up_s``; if it never gets there it stays a learner and the reply
says so), and only then promotes it to voter — so adding a coordinator that must
first copy a large state never lowers fault tolerance. Removing one does the
reverse. A leader asked to remove itself first hands leadership to the most
up-to-date voter. Only the leader's view of the membership counts: a follower
refers these requests to it.
"""

from __future__ import annotations

import asyncio

from .. import protocol
from .._native import native
from ..raft.role import RaftRole
from .replica import Replica, Retry
from .results import Rejected as ApplyRejected
from .writes import write_proposal, write_reply

#: A learner this close to the leader's last index is promoted to voter.
CATCH_UP_DISTANCE = 100


class Membership(Replica):
    """A replica that can change the coordinators' membership."""

    async def _conf_change(self, kind: str, node_id: int) -> None:
        if self.role is not RaftRole.LEADER:
            raise Retry(self._not_leader())
        try:
            index = self.runner.propose_conf_change(kind, node_id)
        except native.ConfChangePendingError:
            raise Retry(protocol.Unavailable("a membership change is in progress; retry")) from None
        except native.NotLeaderError:
            raise Retry(self._not_leader()) from None
        except native.ProposalDroppedError as exc:
            raise Retry(protocol.Unavailable(f"{exc}; retry")) from None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._conf_waiters[index] = fut
        await fut

    def voters(self) -> list[int]:
        return self.runner.consensus.status()["voters"]

    def learners(self) -> list[int]:
        return self.runner.consensus.status()["learners"]

    async def _add_coordinator(self, body: protocol.AddCoordinator) -> protocol.Response:
        result = await self._commit(
            write_proposal(body, self.clock.wall_ms(), protocol.CLIENT_NODE)
        )
        if isinstance(result, ApplyRejected):
            return write_reply(result)
        if body.id in self.voters():
            return protocol.WriteOk(self.state.applied_index, None)
        if body.id not in self.learners():
            await self._conf_change("add_learner", body.id)
        if not await self._caught_up(body.id):
            return protocol.Unavailable(
                f"coordinator {body.id} did not catch up within {self.learner_catch_up_s:g} s "
                "(is it running and reachable?); it stays a learner, which does not count "
                "toward a quorum: retry AddCoordinator to promote it, or remove it"
            )
        await self._conf_change("add", body.id)
        return protocol.WriteOk(self.state.applied_index, None)

    async def _caught_up(self, node_id: int) -> bool:
        """Wait (bounded) until learner ``node_id`` is within CATCH_UP_DISTANCE of our log."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.learner_catch_up_s
        while True:
            if self.role is not RaftRole.LEADER:
                raise Retry(self._not_leader())
            st = self.runner.consensus.status()
            matched = next((p["match"] for p in st["progress"] if p["id"] == node_id), 0)
            # It holds everything up to our snapshot (no snapshot transfer left)
            # and is at most CATCH_UP_DISTANCE entries behind.
            if (
                matched > 0
                and matched >= st["first_index"] - 1
                and matched + CATCH_UP_DISTANCE >= st["last_index"]
            ):
                return True
            if loop.time() >= deadline:
                return False
            # Progress is only visible through the core's status: poll it, a few
            # ticks apart.
            await asyncio.sleep(4 * self.tick_interval)

    async def _remove_coordinator(self, body: protocol.RemoveCoordinator) -> protocol.Response:
        # Only the leader's view of the membership counts: a follower still
        # catching up may see fewer voters (and refuse wrongly).
        if self.role is not RaftRole.LEADER:
            raise Retry(self._not_leader())
        if body.id == self.node_id:
            if self.voters() == [self.node_id]:
                return protocol.Rejected("cannot remove the only coordinator")
            target = self._best_successor()
            if target is None:
                # The core already stepped down; this node hears of it with its next Ready.
                raise Retry(protocol.Unavailable("leadership is changing; retry"))
            self.runner.transfer_leader(target)
            raise Retry(
                protocol.Unavailable(
                    f"handing leadership to node {target} before removing {body.id}"
                )
            )
        if body.id in self.voters() or body.id in self.learners():
            if self.voters() == [body.id]:
                return protocol.Rejected("cannot remove the only coordinator")
            await self._conf_change("remove", body.id)
        if body.id in self.state.coordinators:
            result = await self._commit(
                write_proposal(body, self.clock.wall_ms(), protocol.CLIENT_NODE)
            )
            return write_reply(result)
        return protocol.WriteOk(self.state.applied_index, None)
