"""End to end through commit proxies, over the loopback dialer, with real workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bedrock_cp.protocol import (
    MAX_VALUE_SIZE,
    Commit,
    Committed,
    Failed,
    GetCommitVersion,
    KeyRange,
    Locked,
    LogCommitted,
    LogLock,
    LogLocked,
    LogPush,
    Mutation,
    MutationKind,
    NotCommitted,
    ReportCommitted,
    Request,
    Resolve,
    Response,
    StorageGet,
    StorageGetRange,
    StorageState,
    StorageStatus,
    UnlockProxy,
    Value,
    Values,
    WorkerRef,
    idempotency,
)

from .dataplane_pipeline import TOKEN, FaultyDialer, Pipeline, set_, until, until_async


async def read(p: Pipeline, key: bytes, version: int) -> Response:
    return await p.call(StorageGet("ss0", key, version))


async def test_concurrent_transactions_commit_and_are_readable(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, proxies=2, window_seconds=1.0)
    await p.start()
    done: list[tuple[bytes, bytes, int]] = []

    async def client(n: int) -> None:
        for j in range(25):
            key, value = b"k%d-%d" % (n, j), b"v%d" % j
            answer = await p.commit([set_(key, value)], reads=[KeyRange.single(key)], proxy=n % 2)
            assert isinstance(answer, Committed), answer
            done.append((key, value, answer.version))

    await asyncio.gather(*(client(n) for n in range(8)))
    assert len(done) == 200
    for key, value, version in done:
        assert await read(p, key, version) == Value(value, version)
        assert await read(p, key, version - 1) == Value(None, version - 1)
    # An idle proxy tells the logs the committed version; storage persists it.
    last = max(v for _, _, v in done)
    await until(lambda: p.storage.durable >= last)
    status = await p.call(StorageStatus("ss0"))
    assert isinstance(status, StorageState) and status.applied >= last
    await p.close()


async def test_of_a_conflicting_pair_one_commits(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    first = await p.commit([set_(b"x", b"0")])
    assert isinstance(first, Committed)
    rv = await p.read_version()
    # Both read x at rv and write it (a read-modify-write): at most one may commit.
    answers = await asyncio.gather(
        *(
            p.commit([set_(b"x", b"%d" % i)], reads=[KeyRange.single(b"x")], read_version=rv)
            for i in (1, 2)
        )
    )
    assert sorted(type(a).__name__ for a in answers) == ["Committed", "NotCommitted"]
    assert NotCommitted("conflict") in answers
    # Across resolvers too: y (< m) and z (>= m) live on different resolvers.
    rv = await p.read_version()
    winner = await p.commit([set_(b"z", b"1")])
    loser = await p.commit([set_(b"y", b"1")], reads=[KeyRange(b"y", b"zz")], read_version=rv)
    assert isinstance(winner, Committed) and loser == NotCommitted("conflict")
    await p.close()


async def test_bad_input_fails_clearly_and_others_commit(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    big = [set_(b"big%d" % i, b"x" * (MAX_VALUE_SIZE - 10)) for i in range(101)]
    answers = await asyncio.gather(
        p.commit(big),  # over the transaction size limit
        p.commit([set_(b"a", b"x" * (MAX_VALUE_SIZE + 1))]),  # value over its limit
        p.commit([set_(b"\xffsystem", b"x")]),  # outside the user key space
        p.commit([Mutation(MutationKind.CLEAR_RANGE, b"a", b"\xff\x01")]),
        p.commit([set_(b"ok", b"1")], read_version=10**15, reads=[KeyRange.single(b"ok")]),
        p.commit([set_(b"fine", b"1")]),
    )
    for answer in answers[:4]:
        assert isinstance(answer, Failed) and answer.code == "invalid", answer
    assert "limit" in answers[0].message and "0xff" in answers[2].message  # type: ignore[union-attr]
    future = answers[4]
    assert isinstance(future, Failed) and future.code == "future_version"
    ok = answers[5]
    assert isinstance(ok, Committed)
    assert await read(p, b"fine", ok.version) == Value(b"1", ok.version)
    far = await p.call(StorageGet("ss0", b"fine", ok.version + 10**12), timeout=5.0)
    assert isinstance(far, Failed) and far.code == "future_version"
    await p.close()


async def test_a_proxy_is_locked_until_unlocked_with_its_token(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    body = Commit("proxy0", 0, [], [], [set_(b"a", b"1")])
    assert isinstance(await p.call(body), Locked)
    wrong = await p.call(UnlockProxy("proxy0", 1, b"guess"))
    assert isinstance(wrong, Failed) and wrong.code == "invalid"
    await p.start()
    assert isinstance(await p.commit([set_(b"a", b"1")]), Committed)
    await p.close()


async def test_a_log_lost_during_the_push_leaves_the_outcome_unknown(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    assert isinstance(await p.commit([set_(b"a", b"1")]), Committed)
    rv = await p.read_version()
    await p.logs[1].stop()
    # log0 may make the batch durable: a recovery from it would keep the commit.
    answer = await p.commit([set_(b"a", b"2")], read_version=rv)
    assert isinstance(answer, Failed) and answer.code == "commit_unknown_result", answer
    # The proxy is broken now: later commits are refused before anything is sent.
    later = await p.commit([set_(b"a", b"3")], read_version=rv)
    assert isinstance(later, Failed) and later.code == "unavailable"
    assert p.proxies[0].broken
    await p.close()


async def test_a_push_refused_by_a_newer_epoch_is_answered_without_waiting_for_a_silent_log(
    tmp_path: Path,
) -> None:
    # log1's node is stopped (a push to it never returns, and the proxy's call
    # timeout is long) while the next epoch locked log0: the batch cannot commit
    # any more, so the client hears so now, not when log1 wakes up.
    p = Pipeline(tmp_path, proxy_call_timeout=60.0)
    await p.start()
    rv = await p.read_version()
    stopped = asyncio.Event()  # never set: log1 does not come back in this test
    answer_pushes = p.logs[1].handle

    async def silent(body: Request) -> Response:
        if isinstance(body, LogPush):
            await stopped.wait()
        return await answer_pushes(body)

    p.logs[1].handle = silent  # type: ignore[method-assign]
    assert isinstance(await p.call(LogLock("log0", 2)), LogLocked)
    answer = await asyncio.wait_for(p.commit([set_(b"a", b"1")], read_version=rv), 10)
    # log1 may still append the batch when it wakes: the outcome is unknown.
    assert isinstance(answer, Failed) and answer.code == "commit_unknown_result", answer
    await p.close()


async def test_a_failure_before_the_push_is_definitely_not_committed(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    rv = await p.read_version()
    p.fault = lambda ref, body: OSError("resolver down") if isinstance(body, Resolve) else None
    answer = await p.commit([set_(b"a", b"1")], read_version=rv)
    assert isinstance(answer, Failed) and answer.code == "unavailable", answer
    assert all(log.last == 0 for log in p.logs)  # no log ever saw the batch
    await p.close()


async def test_a_sequencer_lost_after_the_push_leaves_the_outcome_unknown(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    rv = await p.read_version()

    def report_lost(ref: WorkerRef, body: Request) -> BaseException | None:
        return TimeoutError() if isinstance(body, ReportCommitted) else None

    p.fault = report_lost
    answer = await p.commit([set_(b"a", b"1")], reads=[KeyRange.single(b"a")], read_version=rv)
    assert isinstance(answer, Failed) and answer.code == "commit_unknown_result", answer
    # Durable on every log: the next recovery keeps it, although nobody was told.
    assert all(log.durable > rv for log in p.logs)
    await p.close()


async def test_an_idempotent_commit_is_recorded_and_its_retry_conflicts(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    ident = idempotency.new_id()
    rv = await p.read_version()
    first = await p.commit([set_(b"n", b"1")], read_version=rv, idempotency_id=ident)
    assert isinstance(first, Committed)
    record = await read(p, idempotency.record_key(first.version), first.version)
    assert isinstance(record, Value) and record.value is not None
    assert idempotency.decode_ids(record.value) == [ident]
    assert idempotency.record_version(idempotency.record_key(first.version)) == first.version
    # A retry of the same transaction from before that commit, with no reads of
    # its own (a blind write), conflicts on the id: it is never applied twice.
    retry = await p.commit([set_(b"n", b"2")], read_version=rv, idempotency_id=ident)
    assert retry == NotCommitted("conflict")
    # Another transaction from the same read version is not affected.
    other = await p.commit([set_(b"o", b"1")], read_version=rv, idempotency_id=b"other")
    assert isinstance(other, Committed)
    # Two attempts in flight at once: at most one commits.
    rv = await p.read_version()
    again = idempotency.new_id()
    both = await asyncio.gather(
        *(p.commit([set_(b"p", b"%d" % i)], read_version=rv, idempotency_id=again) for i in (1, 2))
    )
    assert sorted(type(a).__name__ for a in both) == ["Committed", "NotCommitted"]
    await p.close()


async def test_a_batch_records_all_its_ids_under_one_key(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    rv = await p.read_version()
    ids = [b"id-%d" % i for i in range(20)]
    answers = await asyncio.gather(
        *(
            p.commit([set_(b"k%d" % i, b"v")], read_version=rv, idempotency_id=ident)
            for i, ident in enumerate(ids)
        )
    )
    versions = {a.version for a in answers if isinstance(a, Committed)}
    assert len(versions) < len(ids)  # batched: fewer records than transactions
    found: list[bytes] = []
    top = max(versions)
    for version in versions:
        record = await read(p, idempotency.record_key(version), top)
        assert isinstance(record, Value) and record.value is not None
        found += idempotency.decode_ids(record.value)
    assert sorted(found) == sorted(ids)
    await p.close()


async def test_idempotency_records_expire_after_the_retention(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, idempotency_retention=0.2)
    await p.start()
    first = await p.commit([set_(b"kept", b"1")], idempotency_id=b"short-lived")
    assert isinstance(first, Committed)
    key = idempotency.record_key(first.version)
    assert await read(p, key, first.version) != Value(None, first.version)

    async def gone() -> bool:
        rv = await p.read_version()
        answer = await read(p, key, rv)
        assert isinstance(answer, Value)
        return answer.value is None

    await until_async(gone)
    # Only the record went: the transaction's own write stays.
    rv = await p.read_version()
    assert await read(p, b"kept", rv) == Value(b"1", rv)
    await p.close()


async def test_clients_read_user_keys_and_idempotency_records_only(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    system = Commit("proxy0", 0, [], [], [set_(b"\xff/epoch", b"1")], TOKEN)
    done = await p.call(system)
    assert isinstance(done, Committed)
    # Storage keeps the system key (the replica serving the end of the user space
    # serves the system keys too), but clients may not read it.
    for body in (
        StorageGet("ss0", b"\xff/epoch", done.version),
        StorageGetRange("ss0", b"\xfe", b"\xff\x01", done.version),
        StorageGetRange("ss0", idempotency.PREFIX, b"\xff\xff", done.version),
    ):
        refused = await p.call(body)
        assert isinstance(refused, Failed) and refused.code == "invalid", (body, refused)
    records = await p.call(
        StorageGetRange("ss0", idempotency.PREFIX, idempotency.END, done.version)
    )
    assert isinstance(records, Values)
    await p.close()


async def test_an_idle_proxy_notices_a_dead_sequencer(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    await p.start()
    await p.sequencer.stop()
    await until(lambda: p.proxies[0].broken is not None, timeout=2.0)
    await p.close()


async def test_an_idle_proxy_tells_the_logs_each_committed_version_once(tmp_path: Path) -> None:
    # The hint lets storage persist the last batches; repeating a version the
    # logs already acknowledged is a round trip to every log for nothing (the
    # read version it also asks for already reaches every log).
    p = Pipeline(tmp_path, proxy_idle_interval=0.02)
    told: list[tuple[str, int]] = []

    def record(ref: WorkerRef, body: Request) -> None:
        if isinstance(body, LogCommitted):
            told.append((ref.id, body.version))

    p.fault = record
    await p.start()
    first = await p.commit([set_(b"a", b"1")])
    assert isinstance(first, Committed)
    await until(lambda: ("log1", first.version) in told)
    checks = p.sequencer.rounds
    await until(lambda: p.sequencer.rounds >= checks + 5)  # five idle checks later
    second = await p.commit([set_(b"b", b"1")])
    assert isinstance(second, Committed)
    await until(lambda: ("log1", second.version) in told)
    await until(lambda: p.sequencer.rounds >= checks + 10)
    assert sorted(set(told)) == sorted(told), told  # nothing told twice
    assert {v for _, v in told} >= {first.version, second.version}
    assert p.proxies[0].broken is None
    await p.close()


async def test_an_idle_proxy_commits_a_lone_transaction_without_waiting(tmp_path: Path) -> None:
    """No batch window when idle: the batch starts within a few turns of the loop,
    with no timer in between (a fixed window would need its timer to fire)."""
    p = Pipeline(tmp_path)
    await p.start()
    rv = await p.read_version()
    started: list[GetCommitVersion] = []

    def watch(ref: WorkerRef, body: Request) -> BaseException | None:
        if isinstance(body, GetCommitVersion):
            started.append(body)
        return None

    p.fault = watch
    commit = asyncio.ensure_future(p.commit([set_(b"a", b"1")], read_version=rv))
    for _ in range(100):
        if started:
            break
        await asyncio.sleep(0)  # one turn of the loop; no time needs to pass
    assert started, "the batch did not start without a timer firing"
    assert isinstance(await commit, Committed)
    await p.close()


class HoldingDialer:
    """The proxy's calls, each LogPush held until ``release`` is set; records
    the mutation count of every batch pushed to log0."""

    def __init__(self, inner: FaultyDialer) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.pushed: list[int] = []

    async def call(self, ref: WorkerRef, body: Request, timeout: float) -> Response:  # noqa: ASYNC109
        if isinstance(body, LogPush):
            if ref.id == "log0":
                self.pushed.append(len(body.batch.mutations))
            await self.release.wait()
        return await self.inner.call(ref, body, timeout)


async def test_a_batch_is_not_held_behind_the_one_in_flight(tmp_path: Path) -> None:
    """Transactions arriving while a batch is being made durable form the next
    batch at once; it is resolved and pushed while the first is still held at
    the logs (the logs take them in version order)."""
    p = Pipeline(tmp_path)
    proxy = p.proxies[0]
    holding = HoldingDialer(FaultyDialer(p))
    proxy._dialer = holding
    await p.start()
    rv = await p.read_version()
    first = asyncio.ensure_future(p.commit([set_(b"a", b"1")], read_version=rv))
    await until(lambda: holding.pushed == [1])  # in flight, held at the logs
    later = [
        asyncio.ensure_future(p.commit([set_(b"k%d" % i, b"v")], read_version=rv)) for i in range(5)
    ]
    await until(lambda: holding.pushed == [1, 5])  # the five as one batch, behind nothing
    assert not first.done()
    holding.release.set()
    a = await first
    rest = await asyncio.gather(*later)
    assert isinstance(a, Committed) and all(isinstance(r, Committed) for r in rest), rest
    assert len({r.version for r in rest if isinstance(r, Committed)}) == 1
    assert all(r.version > a.version for r in rest if isinstance(r, Committed))
    await p.close()


class GatedDialer:
    """The proxy's calls; the first LogPush waits for ``push_gate`` and then
    fails, every Resolve after the first waits for ``resolve_gate``."""

    def __init__(self, inner: FaultyDialer) -> None:
        self.inner = inner
        self.push_gate = asyncio.Event()
        self.resolve_gate = asyncio.Event()
        self.pushes: list[int] = []  # commit versions pushed to log0
        self.resolves = 0

    async def call(self, ref: WorkerRef, body: Request, timeout: float) -> Response:  # noqa: ASYNC109
        if isinstance(body, Resolve) and ref.id == "res0":
            self.resolves += 1
            if self.resolves > 1:
                await self.resolve_gate.wait()
        if isinstance(body, LogPush) and ref.id == "log0":
            self.pushes.append(body.batch.version)
            if len(self.pushes) == 1:
                await self.push_gate.wait()
                raise OSError("log0 lost")
        return await self.inner.call(ref, body, timeout)


async def test_a_batch_behind_a_failed_one_never_reaches_a_log(tmp_path: Path) -> None:
    """Its clients were told it did not commit: it must not be pushed afterwards."""
    p = Pipeline(tmp_path)
    proxy = p.proxies[0]
    gated = GatedDialer(FaultyDialer(p))
    proxy._dialer = gated
    await p.start()
    rv = await p.read_version()
    first = asyncio.ensure_future(p.commit([set_(b"a", b"1")], read_version=rv))
    await until(lambda: len(gated.pushes) == 1)
    second = asyncio.ensure_future(p.commit([set_(b"b", b"2")], read_version=rv))
    await until(lambda: gated.resolves == 2)  # the second batch waits at the resolver
    gated.push_gate.set()  # the first batch's push fails: the proxy is broken
    a, b = await asyncio.gather(first, second)
    assert isinstance(a, Failed) and a.code == "commit_unknown_result", a
    assert isinstance(b, Failed) and b.code == "unavailable", b
    gated.resolve_gate.set()  # the second batch's resolver answers after all
    await until(lambda: not proxy._batch_tasks)
    assert len(gated.pushes) == 1, "a batch answered 'unavailable' was pushed to a log"
    await p.close()
