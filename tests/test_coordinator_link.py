"""The coordinator-connection layer the client and every Gateway share.

Discovery, redirects and the backoff run against scripted coordinators whose
every request and answer is encoded and decoded with the real codec (as the
in-process loopback does); hedging runs against real node processes, one of
them stopped with SIGSTOP (its sockets stay open: no reset tells anyone).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
from collections.abc import Callable

import pytest

from bedrock_cp import protocol
from bedrock_cp.client import Client
from bedrock_cp.client.coordinators import CoordinatorLink, Leader
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.gateway import Gateway
from bedrock_cp.protocol import decode_request, decode_response, encode

from .clusters import eventually, running

A, B, C = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"
ID = {A: 1, B: 2, C: 3}


class Scripted:
    """Coordinators answering from a script: ``pings[address]`` is the PingReply
    that address gives, ``answers[address]`` what it answers to anything else.
    Every body crosses the real codec both ways; ``calls`` records (address, tag)."""

    def __init__(
        self,
        pings: dict[str, protocol.PingReply],
        answers: dict[str, protocol.Response],
        slow: dict[str, float] | None = None,
        slow_pings: dict[str, float] | None = None,
        dead: frozenset[str] = frozenset(),
    ) -> None:
        self.pings = pings
        self.answers = answers
        #: Seconds an address takes to answer anything but a ping, and a ping.
        self.slow = slow or {}
        self.slow_pings = slow_pings or {}
        #: Addresses that refuse every connection.
        self.dead = dead
        self.calls: list[tuple[str, str]] = []

    async def call(
        self,
        address: str,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
    ) -> protocol.Response:
        request = decode_request(encode(body))
        self.calls.append((address, type(request).__name__))
        if address in self.dead:
            raise ConnectionRefusedError(f"{address} refused the connection")
        if isinstance(request, protocol.Ping):
            answer: protocol.Response = self.pings[address]
            await asyncio.sleep(self.slow_pings.get(address, 0.0))
            self.calls.append((address, "PingAnswered"))
        else:
            answer = self.answers[address]
            await asyncio.sleep(self.slow.get(address, 0.0))
        await asyncio.sleep(0)
        return decode_response(encode(answer))

    async def close(self) -> None:
        pass

    def writes(self) -> list[str]:
        return [a for a, tag in self.calls if tag not in ("Ping", "PingAnswered")]


def stale_follower_script() -> Scripted:
    """Node 2 leads term 2 and has not applied the last epoch yet (3). Node 3
    still follows node 1, the leader of term 1, and applied epoch 4 before it
    lost touch; node 1 (cut off, not stopped) still believes it leads term 1."""
    pings = {
        A: protocol.PingReply(1, 1, 4, 1, A, "ready"),
        B: protocol.PingReply(2, 2, 3, 2, B, "waiting_consensus"),
        C: protocol.PingReply(3, 1, 4, 1, A, "follower"),
    }
    answers: dict[str, protocol.Response] = {
        A: protocol.NotLeader(0, ""),
        B: protocol.WriteOk(9, None),
        C: protocol.NotLeader(1, A),
    }
    return Scripted(pings, answers)


async def test_discovery_follows_the_leader_of_the_highest_term_not_the_highest_epoch() -> None:
    script = stale_follower_script()
    link = CoordinatorLink([A, B, C], script.call, rng=random.Random(1))
    assert await link.discover(1.0) == Leader(2, B, 2)
    assert link.epoch == 4  # the highest epoch seen is still reported


async def test_a_gateway_follows_the_leader_of_the_highest_term_not_the_highest_epoch() -> None:
    script = stale_follower_script()
    gateway = Gateway(
        "7",
        "127.0.0.1:9",
        [A, B, C],
        "c",
        capabilities=lambda: ["log"],
        services=list,
        rng=random.Random(2),
        caller=script,
        watch_wait_ms=50,
    )
    gateway.start()
    try:

        async def registered() -> bool:
            return gateway.registrations > 0

        await eventually(registered, timeout=5, what="the gateway registered")
        assert gateway.leader() == (2, B)
        assert (A, "RegisterNodeRequest") not in script.calls
    finally:
        await gateway.stop()


class LosingLeader:
    """One coordinator, A, that leads and registers the Gateway, then holds its
    layout watch until :attr:`lost` is set and refuses from then on (it died)."""

    def __init__(self) -> None:
        self.lost = asyncio.Event()

    async def call(
        self,
        address: str,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
    ) -> protocol.Response:
        if self.lost.is_set():
            raise ConnectionRefusedError(f"{address} refused the connection")
        match decode_request(encode(body)):
            case protocol.Ping():
                return protocol.PingReply(1, 1, 0, 1, A, "ready")
            case protocol.RegisterNodeRequest():
                return protocol.WriteOk(3, None)
        await self.lost.wait()
        raise ConnectionRefusedError(f"{address} closed the connection")

    async def close(self) -> None:
        pass


async def test_a_gateway_stops_when_told_to_as_its_leader_is_lost() -> None:
    # The leader dies in the loop iteration the node stops its Gateway: the
    # follow loop's tasks fail with "leader lost" as the stop cancels them.
    # The stop must win (an asyncio.TaskGroup lets its tasks' errors win over
    # a cancellation, so the Gateway went on looking for a leader, and the
    # node's stop hung until it was killed).
    script = LosingLeader()
    gateway = Gateway(
        "7",
        "127.0.0.1:9",
        [A],
        "c",
        capabilities=lambda: ["log"],
        services=list,
        rng=random.Random(7),
        caller=script,
    )
    gateway.start()

    async def registered() -> bool:
        return gateway.registrations > 0

    await eventually(registered, timeout=5, what="the gateway registered")
    script.lost.set()
    await asyncio.wait_for(gateway.stop(), 5)


async def test_a_redirect_chain_is_followed_to_the_leader_without_rediscovery() -> None:
    # Every coordinator still names A; A points to B, B to C, and C leads.
    pings = {a: protocol.PingReply(ID[a], 1, 0, 1, A, "follower") for a in (A, B, C)}
    answers: dict[str, protocol.Response] = {
        A: protocol.NotLeader(2, B),
        B: protocol.NotLeader(3, C),
        C: protocol.WriteOk(5, None),
    }
    script = Scripted(pings, answers)
    link = CoordinatorLink([A, B, C], script.call, rng=random.Random(3))
    reply = await link.call_leader(protocol.Deregister("svc", 1, 1), 5.0)
    assert reply == protocol.WriteOk(5, None)
    assert script.writes() == [A, B, C]
    assert [a for a, tag in script.calls if tag == "Ping"] == [A, B, C]  # one discovery round
    assert link.leader == Leader(3, C, 0)


async def test_after_a_failover_a_newer_leader_is_tried_without_waiting_for_a_slow_survivor() -> (
    None
):
    # A led term 2 and died. B already leads term 3; C is slow to answer pings.
    # A majority of answers (B and C) is not needed: B's term is news enough.
    pings = {
        B: protocol.PingReply(2, 3, 0, 2, B, "ready"),
        C: protocol.PingReply(3, 3, 0, 2, B, "follower"),
    }
    answers: dict[str, protocol.Response] = {B: protocol.WriteOk(4, None)}
    script = Scripted(pings, answers, slow_pings={C: 0.5}, dead=frozenset({A}))
    link = CoordinatorLink([A, B, C], script.call, rng=random.Random(5))
    link.leader = Leader(1, A, 2)
    reply = await link.call_leader(protocol.Deregister("svc", 1, 1), 5.0)
    assert reply == protocol.WriteOk(4, None)
    before_the_write = script.calls[: script.calls.index((B, "Deregister"))]
    assert (C, "Ping") in before_the_write
    assert (C, "PingAnswered") not in before_the_write


async def test_a_slow_leader_is_not_left_for_a_stale_one_its_peers_outrank() -> None:
    # A leads term 5 and is slow to answer; B follows it; C, cut off since
    # term 4, still says it leads. Hedging must not take C for a newer leader.
    pings = {
        A: protocol.PingReply(1, 5, 0, 1, A, "ready"),
        B: protocol.PingReply(2, 5, 0, 1, A, "follower"),
        C: protocol.PingReply(3, 4, 0, 3, C, "ready"),
    }
    answers: dict[str, protocol.Response] = {
        A: protocol.WriteOk(8, None),
        B: protocol.NotLeader(1, A),
        C: protocol.Unavailable("no quorum"),
    }
    script = Scripted(pings, answers, slow={A: 0.3})
    link = CoordinatorLink([A, B, C], script.call, rng=random.Random(4), hedge_after=0.02)
    reply = await link.call_leader(protocol.Deregister("svc", 1, 1), 5.0)
    assert reply == protocol.WriteOk(8, None)
    assert script.writes() == [A]
    assert sum(1 for a, tag in script.calls if tag == "Ping" and a != A) > 2  # it hedged


class Electing(Scripted):
    """Coordinators that hold a long-polling ``Ping`` (``wait_ms > 0``) while
    they still name the leader it is stuck at, as the real ones do, until
    :meth:`elect` gives them a new view; ``pings_after_election`` counts the
    pings sent once it did."""

    def __init__(
        self,
        pings: dict[str, protocol.PingReply],
        answers: dict[str, protocol.Response],
        slow: dict[str, float],
    ) -> None:
        super().__init__(pings, answers, slow=slow)
        self.elected = asyncio.Event()
        self.pings_after_election = 0
        self.long_polls = 0
        self.pings_sent: dict[str, int] = {}

    def elect(self, pings: dict[str, protocol.PingReply]) -> None:
        self.pings.update(pings)
        self.elected.set()

    async def elect_b_once_b_and_c_were_asked_twice(self) -> None:
        """Wait until B and C got two pings each (the second one held if it is
        a long poll), then elect B in term 3."""

        async def asked_twice() -> bool:
            return all(self.pings_sent.get(a, 0) >= 2 for a in (B, C))

        await eventually(asked_twice, timeout=10, what="B and C were asked twice")
        self.elect(
            {
                B: protocol.PingReply(2, 3, 0, 2, B, "ready"),
                C: protocol.PingReply(3, 3, 0, 2, B, "follower"),
            }
        )

    async def call(
        self,
        address: str,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
    ) -> protocol.Response:
        if isinstance(body, protocol.Ping):
            self.pings_sent[address] = self.pings_sent.get(address, 0) + 1
            if self.elected.is_set():
                self.pings_after_election += 1
            elif body.wait_ms > 0 and self.pings[address].leader_id == body.leader_id:
                self.long_polls += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(body.wait_ms / 1000):
                        await self.elected.wait()
        return await super().call(address, body, timeout)


async def test_a_stopped_leaders_successor_is_learned_from_a_poll_already_waiting() -> None:
    # A leads term 2 and stopped (no reset: the try just waits). B and C
    # follow it until B is elected. The hedge must not poll for news: the
    # peers are asked to answer when they know of a new leader, so the client
    # moves on the moment one does, whatever the polling interval.
    pings = {a: protocol.PingReply(ID[a], 2, 0, 1, A, "follower") for a in (B, C)}
    # A's answer never comes in time: it is stopped.
    answers: dict[str, protocol.Response] = {
        A: protocol.WriteOk(0, None),
        B: protocol.WriteOk(6, None),
    }
    script = Electing(pings, answers, slow={A: 60.0})
    link = CoordinatorLink([A, B, C], script.call, rng=random.Random(6), hedge_after=0.01)
    link.leader = Leader(1, A, 2)
    write = asyncio.ensure_future(link.call_leader(protocol.Deregister("svc", 1, 1), 30.0))

    await script.elect_b_once_b_and_c_were_asked_twice()
    assert await asyncio.wait_for(write, 10) == protocol.WriteOk(6, None)
    assert script.writes() == [A, B]
    assert script.pings_after_election == 0, "the news came from a poll that was already waiting"
    assert script.long_polls >= 2


async def test_a_leader_elected_while_none_was_named_is_learned_from_a_poll_already_waiting() -> (
    None
):
    # A died (refused); B and C are electing, naming no leader, for as long
    # as the test likes. The client must not poll on a backoff that grows
    # with the election's length: it learns B the moment B is elected.
    pings = {a: protocol.PingReply(ID[a], 3, 0, 0, "", "candidate") for a in (B, C)}
    answers: dict[str, protocol.Response] = {B: protocol.WriteOk(7, None)}
    script = Electing(pings, answers, slow={})
    script.dead = frozenset({A})
    link = CoordinatorLink([A, B, C], script.call, rng=random.Random(8))
    write = asyncio.ensure_future(link.call_leader(protocol.Deregister("svc", 1, 1), 30.0))

    await script.elect_b_once_b_and_c_were_asked_twice()
    assert await asyncio.wait_for(write, 10) == protocol.WriteOk(7, None)
    assert script.writes() == [B]
    assert script.pings_after_election == 0, "the news came from a poll that was already waiting"


def test_the_backoff_stays_within_its_bounds() -> None:
    # An election takes tens of milliseconds: for its first 100 tries (about
    # 0.75 s) a client or Gateway looks again within 2 ms at first and never
    # waits more than 10 ms; after that ever less often, never over 1 s.
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    link = CoordinatorLink([A], Scripted({}, {}).call, rng=random.Random(seed))
    delays = [link.retry_delay(n) for n in range(300)]
    assert 0.001 <= delays[0] <= 0.002
    assert all(0.001 <= d <= 0.010 for d in delays[:100])
    assert 0.45 < sum(delays[:100]) < 1.0
    # Each ceiling doubles per try up to its cap; the jitter keeps each delay
    # in the upper half of its ceiling.
    for n, d in enumerate(delays):
        ceiling = min(0.010, 0.002 * 2**n) if n < 100 else min(1.0, 0.010 * 2 ** (n - 100))
        assert ceiling / 2 <= d <= ceiling, (n, d)
    assert all(0.5 <= d <= 1.0 for d in delays[107:])


async def test_a_ping_given_up_leaves_no_failed_call_unretrieved() -> None:
    """A ping cancelled (its hedge ended, the request was answered) after some
    of its calls failed but before it looked at them: their failures are
    nobody's to hear. Before, each such call's task logged "Task exception was
    never retrieved" (seen under 64 writers, whose slow tries hedge). Cancelled
    at each of the loop turns around the calls' failures."""
    loop = asyncio.get_running_loop()
    unheard: list[str] = []
    loop.set_exception_handler(lambda _loop, ctx: unheard.append(str(ctx.get("message"))))
    link = CoordinatorLink(
        [A, B, C], Scripted({}, {}, dead=frozenset({A, B, C})).call, rng=random.Random(1)
    )

    for turns in range(6):
        ping = asyncio.ensure_future(link.ping([A, B, C], 1.0, 3))
        _after(turns, ping.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await ping
    for _ in range(3):
        await asyncio.sleep(0)  # the tasks' callbacks ran
    gc.collect()
    assert unheard == []


def _after(turns: int, do: Callable[[], object]) -> None:
    """Call ``do`` after ``turns`` turns of the running loop."""
    if turns == 0:
        do()
    else:
        asyncio.get_running_loop().call_soon(_after, turns - 1, do)


@pytest.mark.slow
async def test_a_stopped_leader_is_left_for_the_new_one_while_the_try_still_waits() -> None:
    # The try's own timeout is far past the request's deadline: only hedging
    # (asking the others while the try is slow) can find the new leader in time.
    async with running(LocalCluster(3)) as cluster:
        leader = await cluster.wait_ready()
        slow = Client(cluster.client_cluster_file(), request_timeout=15.0, attempt_timeout=60.0)
        try:
            await slow.register("before", kind="log", address="127.0.0.1:9")
            assert slow.link.leader is not None
            assert slow.link.leader.address == cluster.addresses[leader]
            cluster.pause(leader)
            try:
                await slow.register("after", kind="log", address="127.0.0.1:9")
                assert slow.link.leader is not None
                assert slow.link.leader.address != cluster.addresses[leader]
            finally:
                cluster.resume(leader)
        finally:
            await slow.close()


@pytest.mark.slow
async def test_a_follower_answers_a_leader_watch_once_it_names_the_new_leader() -> None:
    async with running(LocalCluster(3)) as cluster:
        leader = await cluster.wait_ready()
        client = Client(cluster.client_cluster_file())
        try:
            follower = next(i for i in cluster.addresses if i != leader)
            at = cluster.addresses[follower]
            first = await client.link.call(at, protocol.Ping(), 5.0)
            assert isinstance(first, protocol.PingReply) and first.leader_id == leader
            # Nothing changes: the watch answers when its wait ends, with the same view.
            same = await client.link.call(at, protocol.Ping(100, leader, first.term), 5.0)
            assert isinstance(same, protocol.PingReply)
            assert (same.leader_id, same.term) == (leader, first.term)
            watch = protocol.Ping(5_000, leader, first.term)
            asked = asyncio.ensure_future(client.link.call(at, watch, 10.0))
            cluster.pause(leader)
            try:
                reply = await asyncio.wait_for(asked, 30)
                assert isinstance(reply, protocol.PingReply)
                if reply.leader_id == leader:  # a loaded host: the wait ended first
                    reply = await client.link.call(at, watch, 30.0)
                    assert isinstance(reply, protocol.PingReply)
            finally:
                cluster.resume(leader)
            assert reply.leader_id not in (0, leader), reply
            assert reply.term > first.term
        finally:
            await client.close()
