"""Requests from a worker to another worker of its own node that need no waiting
are answered by a call (``bedrock_cp.node.own_workers``), with the answer the
usual way would give, and only those: a request that must wait, a Director
request, a ``Health`` and anything for another node still go the usual way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bedrock_cp import protocol
from bedrock_cp.client import open_database
from bedrock_cp.dataplane import Resolver, Sequencer
from bedrock_cp.node import Node
from bedrock_cp.protocol import KeyRange, WorkerRef
from tests.clusters import eventually, single_node


async def _commit_one(db: object, key: bytes) -> None:
    async for tr in db.attempts():  # type: ignore[attr-defined]
        async with tr:
            await tr.read_version()
            tr.set(key, b"v")


async def _started(tmp_path: Path) -> tuple[Node, protocol.Layout]:
    config = single_node(tmp_path)
    node = await Node.start(config)

    async def layout() -> protocol.Layout | None:
        return node.gateway.current_layout() if node.gateway is not None else None

    try:
        current = await eventually(layout, what="the first layout")
    except BaseException:
        await node.stop()
        raise
    return node, current


async def test_a_transaction_on_one_node_asks_its_roles_by_a_call(tmp_path: Path) -> None:
    node, _ = await _started(tmp_path)
    try:
        db = await open_database(node.config.listen)
        try:
            async with asyncio.timeout(30):
                await _commit_one(db, b"warm")
            dialer, channel = node.worker_dialer, node.local_channel
            assert dialer is not None and channel is not None
            answered, served = dialer.answered_now, channel.local_calls
            async with asyncio.timeout(30):
                await _commit_one(db, b"k")
        finally:
            await db.close()
        # The log's epoch confirmation (read version), the commit version, the
        # resolution and the report: four calls, none through the local channel.
        assert dialer.answered_now - answered >= 4
        # What waits still goes the usual way: the push (until durable), the pulls.
        assert channel.local_calls > served
    finally:
        await node.stop()


async def test_an_answer_at_once_is_the_answer_the_usual_way_gives(tmp_path: Path) -> None:
    node, layout = await _started(tmp_path)
    try:
        dialer = node.worker_dialer
        assert dialer is not None and node.dialer is not None
        seq, log_ref = layout.sequencer, layout.logs[0]
        cases: list[tuple[WorkerRef, protocol.Request]] = [
            (seq, protocol.ReportCommitted(seq.id, layout.epoch, 0)),
            (seq, protocol.ReportCommitted(seq.id, layout.epoch - 1, 0)),  # an old epoch
            (seq, protocol.ReportCommitted(seq.id, layout.epoch, 10**15)),  # never handed out
            (log_ref, protocol.ConfirmEpoch(log_ref.id, layout.epoch)),
            (log_ref, protocol.ConfirmEpoch(log_ref.id, layout.epoch - 1)),
        ]
        for ref, body in cases:
            before = dialer.answered_now
            at_once = await dialer.call(ref, body, 2.0)
            assert dialer.answered_now == before + 1, body
            usual = await node.dialer.call(ref, body, 2.0)
            assert at_once == usual, body
    finally:
        await node.stop()


async def test_only_what_needs_no_waiting_and_the_node_may_send_itself(tmp_path: Path) -> None:
    node, layout = await _started(tmp_path)
    try:
        dialer, foreman = node.worker_dialer, node.foreman
        assert dialer is not None and foreman is not None
        log_ref = layout.logs[0]
        log_worker = foreman.route(log_ref.id)
        assert log_worker is not None
        asked: list[protocol.Request] = []

        def answer_probe(body: protocol.Request) -> protocol.Response | None:
            asked.append(body)
            return protocol.Done() if isinstance(body, protocol.ConfirmEpoch) else None

        # A log that records what it is asked at once: what reaches it is the node's choice.
        log_worker.answer_now = answer_probe  # type: ignore[attr-defined]
        confirm = protocol.ConfirmEpoch(log_ref.id, layout.epoch)
        assert await dialer.call(log_ref, confirm, 2.0) == protocol.Done()
        assert confirm in asked
        # A Director request (its epoch check may wait): the usual way, which
        # refuses a stale epoch before the log sees it.
        stale_lock = protocol.LogLock(log_ref.id, layout.epoch - 1)
        answer = await dialer.call(log_ref, stale_lock, 2.0)
        assert not isinstance(answer, protocol.Done)
        # Health is the node's to answer (a broken worker is as dead as a missing one).
        assert await dialer.call(log_ref, protocol.Health(log_ref.id), 2.0) == protocol.Done()
        # Another node's worker: over the network (nothing listens there).
        elsewhere = WorkerRef(log_ref.id, log_ref.kind, "2", "127.0.0.1:1")
        with pytest.raises(OSError):
            await dialer.call(elsewhere, confirm, 0.5)
        assert asked.count(confirm) == 1
        assert not any(isinstance(b, protocol.LogLock | protocol.Health) for b in asked)
    finally:
        await node.stop()


def _sequencer(epoch: int = 5) -> Sequencer:
    ref = WorkerRef("seq", "sequencer", "1", "127.0.0.1:1")
    return Sequencer(ref, epoch, 1000, clock=lambda: 0.0, logs=[], dialer=None)  # type: ignore[arg-type]


async def test_a_sequencer_answers_at_once_as_it_handles() -> None:
    requests: list[protocol.Request] = [
        protocol.GetCommitVersion("seq", 5),
        protocol.ReportCommitted("seq", 5, 1001),
        protocol.ReportCommitted("seq", 5, 5000),  # never handed out
        protocol.GetCommitVersion("seq", 4),  # an old epoch
        protocol.GetCommitVersion("seq", 6),  # a newer one: superseded from then on
        protocol.GetCommitVersion("seq", 5),
    ]
    by_call, by_handle = _sequencer(), _sequencer()
    for body in requests:
        assert by_call.answer_now(body) == await by_handle.handle(body), body
    # A read version waits for a confirmation round: never answered at once.
    assert _sequencer().answer_now(protocol.GetReadVersion("seq", 5)) is None
    stopped = _sequencer()
    await stopped.stop()
    assert stopped.answer_now(protocol.GetCommitVersion("seq", 5)) == protocol.Failed(
        "unavailable", "sequencer seq is stopped"
    )


def _resolver() -> Resolver:
    ref = WorkerRef("res", "resolver", "1", "127.0.0.1:1")
    return Resolver(ref, 5, 100, KeyRange(b"", b"\xff"))


def _resolve(prev: int, version: int, read_version: int, key: bytes) -> protocol.Resolve:
    single = KeyRange(key, key + b"\x00")
    txn = protocol.ResolveTransaction(read_version, [single], [single])
    return protocol.Resolve("res", 5, prev, version, [txn])


async def test_a_resolver_answers_at_once_only_the_next_batch_in_order() -> None:
    requests = [
        _resolve(100, 110, 100, b"a"),
        _resolve(110, 120, 100, b"a"),  # read before 110's write: a conflict
        _resolve(110, 120, 100, b"a"),  # a replay: the same answer
        _resolve(110, 125, 100, b"b"),  # 120 is taken by another batch
        _resolve(130, 130, 100, b"c"),  # not above its predecessor
    ]
    by_call, by_handle = _resolver(), _resolver()
    for body in requests:
        assert by_call.answer_now(body) == await by_handle.handle(body), body
    # A batch whose predecessor has not arrived waits for it (the usual way).
    resolver = _resolver()
    later = _resolve(110, 120, 100, b"z")
    assert resolver.answer_now(later) is None
    waiting = asyncio.ensure_future(resolver.handle(later))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert resolver.answer_now(_resolve(100, 110, 100, b"y")) == protocol.Resolved([True])
    async with asyncio.timeout(5):
        assert await waiting == protocol.Resolved([True])
