"""The client's retry loop over a real in-process pipeline: unknown outcomes are
never taken for "not committed", and an old layout is refreshed.

The :class:`~bedrock_cp.client.Database` runs against the workers of
:class:`~.dataplane_pipeline.Pipeline` through a dialer that can lose, delay or
answer in place of a call, and a layout source the test controls.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bedrock_cp.client import (
    Database,
    ErrorCode,
    Transaction,
    TransactionError,
    errors,
    transaction,
)
from bedrock_cp.protocol import (
    Commit,
    Committed,
    Failed,
    GetReadVersion,
    Layout,
    ReadVersion,
    Request,
    Response,
    StorageGet,
    StorageTeam,
    WorkerRef,
)

from .dataplane_pipeline import Pipeline, ref

#: Given a call, an answer to give (or error to raise) instead of making it
#: (None: make the call).
Intercept = Callable[[WorkerRef, Request], Awaitable[Response | BaseException | None]]


class Dialer:
    def __init__(self, p: Pipeline) -> None:
        self.p = p
        self.intercept: Intercept | None = None
        self.commits: list[Commit] = []
        #: Every request the database sent, in order.
        self.requests: list[Request] = []

    async def connect(self, to: WorkerRef, timeout: float) -> None:  # noqa: ASYNC109
        pass

    async def call(self, to: WorkerRef, body: Request, timeout: float) -> Response:  # noqa: ASYNC109
        self.requests.append(body)
        if isinstance(body, Commit):
            self.commits.append(body)
        if self.intercept is not None and (answer := await self.intercept(to, body)) is not None:
            if isinstance(answer, BaseException):
                raise answer
            return answer
        return await self.p.dialer.call(to, body, timeout)

    async def close(self) -> None:
        pass


class Layouts:
    """The gateways, as a client sees them: a layout, long-polled when asked to."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.fetches = 0
        self._published = asyncio.Event()

    def publish(self, layout: Layout) -> None:
        self.layout = layout
        self._published.set()

    async def fetch_layout(
        self,
        timeout: float = 2.0,  # noqa: ASYNC109
        *,
        newer_than: int = 0,
        wait: float = 0.0,
    ) -> Layout | None:
        self.fetches += 1
        if wait > 0 and self.layout.epoch <= newer_than:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), wait)
        return self.layout

    async def close(self) -> None:
        pass


async def _setup(tmp_path: Path) -> tuple[Pipeline, Dialer, Database]:
    p = Pipeline(tmp_path, epoch=2)
    await p.start()
    dialer = Dialer(p)
    return p, dialer, Database(Layouts(p.layout), dialer)


def _behind(db: Database) -> tuple[Layouts, Layout]:
    """Client and gateways hold epoch 1's layout (sequencer ``old-seq``), whose
    epoch is over: the test publishes the current one when it wants."""
    source = db.client
    assert isinstance(source, Layouts)
    old = Layout(1, 0, ref("old-seq", "sequencer"), [], [], [], [])
    source.layout = old
    db.layout = old
    return source, old


async def _counter(db: Database) -> int:
    async with db.transaction() as tr:
        return int(await tr.get(b"counter") or b"0")


async def _increment(db: Database, runs: list[int], **kwargs: object) -> Transaction:
    async for tr in db.attempts(**kwargs):  # type: ignore[arg-type]
        async with tr:
            n = int(await tr.get(b"counter") or b"0")
            runs.append(n)
            tr.set(b"counter", str(n + 1).encode())
    return tr


async def test_a_commit_whose_answer_was_lost_is_found_and_not_run_again(tmp_path: Path) -> None:
    p, dialer, db = await _setup(tmp_path)
    answered: list[Response] = []

    async def lose_first_answer(to: WorkerRef, body: Request) -> Response | BaseException | None:
        if isinstance(body, Commit) and not answered:
            answered.append(await p.dialer.call(to, body, 5.0))  # it commits ...
            return TimeoutError("the answer was lost")  # ... but the client never hears
        return None

    dialer.intercept = lose_first_answer
    runs: list[int] = []
    tr = await _increment(db, runs)
    assert runs == [0], "the block ran again after its commit"
    assert isinstance(answered[0], Committed)
    assert tr.committed_earlier and tr.committed_version == answered[0].version
    assert await _counter(db) == 1
    await p.close()


async def test_a_commit_that_never_arrived_runs_again_once(tmp_path: Path) -> None:
    p, dialer, db = await _setup(tmp_path)

    async def lose_first(to: WorkerRef, body: Request) -> Response | BaseException | None:
        if isinstance(body, Commit) and len(dialer.commits) == 1:
            return ConnectionResetError("lost on the way")
        return None

    dialer.intercept = lose_first
    runs: list[int] = []
    tr = await _increment(db, runs)
    assert runs == [0, 0] and not tr.committed_earlier
    assert await _counter(db) == 1
    assert len({c.idempotency_id for c in dialer.commits}) == 1  # one id for all attempts
    await p.close()


async def test_an_attempt_still_in_flight_and_its_retry_never_both_commit(tmp_path: Path) -> None:
    p, dialer, db = await _setup(tmp_path)
    held: list[tuple[WorkerRef, Request]] = []
    outcomes: list[Response] = []

    async def delay_the_first(to: WorkerRef, body: Request) -> Response | BaseException | None:
        if not isinstance(body, Commit):
            return None
        if not held:
            held.append((to, body))  # delayed in the network: the client gives up on it
            return TimeoutError("no answer yet")
        if len(dialer.commits) == 2:
            # The retry looked the id up (nothing yet) and ran its block; before its
            # commit goes out, the first attempt lands and commits.
            outcomes.append(await p.dialer.call(*held[0], 5.0))
        return None

    dialer.intercept = delay_the_first
    runs: list[int] = []
    tr = await _increment(db, runs)
    assert runs == [0, 0]
    assert isinstance(outcomes[0], Committed)
    # The retry conflicted on the id; the next attempt found the first one's commit.
    assert tr.committed_earlier and tr.committed_version == outcomes[0].version
    assert await _counter(db) == 1, "two attempts of one transaction committed"
    await p.close()


async def test_without_idempotency_an_unknown_outcome_is_raised_not_retried(
    tmp_path: Path,
) -> None:
    p, dialer, db = await _setup(tmp_path)

    async def no_answer(to: WorkerRef, body: Request) -> Response | BaseException | None:
        return TimeoutError() if isinstance(body, Commit) else None

    dialer.intercept = no_answer
    runs: list[int] = []
    with pytest.raises(TransactionError) as raised:
        await _increment(db, runs, idempotent=False)
    assert raised.value.code is ErrorCode.COMMIT_UNKNOWN_RESULT and raised.value.maybe_committed
    assert runs == [0]
    # A bare transaction has no id: it raises the unknown outcome to its caller.
    with pytest.raises(TransactionError) as bare:
        async with db.transaction() as tr:
            tr.set(b"x", b"1")
    assert bare.value.code == "commit_unknown_result" and bare.value.maybe_committed
    await p.close()


async def test_a_proxy_that_broke_after_pushing_is_an_unknown_outcome(tmp_path: Path) -> None:
    p, dialer, db = await _setup(tmp_path)

    async def broke(to: WorkerRef, body: Request) -> Response | BaseException | None:
        if isinstance(body, Commit):
            return Failed("commit_unknown_result", "broke after the push")
        return None

    dialer.intercept = broke
    with pytest.raises(TransactionError) as bare:
        async with db.transaction() as tr:
            tr.set(b"x", b"1")
    assert bare.value.code is ErrorCode.COMMIT_UNKNOWN_RESULT and bare.value.retryable
    await p.close()


async def test_version_too_old_against_an_old_layout_refreshes_it(tmp_path: Path) -> None:
    p, dialer, db = await _setup(tmp_path)
    # The previous epoch's layout: its sequencer still answers (with a version
    # from before the epoch change) and its replica no longer keeps that version.
    old = Layout(
        1,
        0,
        ref("old-seq", "sequencer"),
        [ref("old-proxy", "commit_proxy")],
        p.layout.resolvers,
        [ref("old-log", "log")],
        [StorageTeam(b"", b"\xff", [ref("old-ss", "storage")])],
    )

    async def old_epoch(to: WorkerRef, body: Request) -> Response | BaseException | None:
        if isinstance(body, GetReadVersion) and to.id == "old-seq":
            return ReadVersion(1)
        if isinstance(body, StorageGet) and to.id == "old-ss":
            return Failed("version_too_old", "version 1 < oldest kept 5000000")
        return None

    dialer.intercept = old_epoch
    db.layout = old
    errors: list[str] = []
    async for tr in db.attempts(max_attempts=3):
        async with tr:
            await tr.get(b"counter")
        if tr.error is not None:
            errors.append(tr.error.code)
    assert tr.committed_version is not None, errors
    assert errors == ["version_too_old"]
    assert db.layout is p.layout
    await p.close()


def test_every_error_code_says_whether_to_retry_and_whether_it_may_have_committed() -> None:
    assert [c for c in ErrorCode if c.maybe_committed] == [ErrorCode.COMMIT_UNKNOWN_RESULT]
    assert {c for c in ErrorCode if not c.retryable} == {ErrorCode.INVALID, ErrorCode.INTERNAL}
    # The table in the errors module's docstring is the documented list: it
    # names every code, with the properties the code has.
    documented = {
        code: [flag.strip("*") == "yes" for flag in flags]
        for code, *flags in re.findall(
            r"^``(\w+)``\s+(\S+)\s+(\S+)\s+(\S+)$", errors.__doc__ or "", re.M
        )
    }
    assert documented == {
        str(c): [c.retryable, c.maybe_committed, c.refreshes_layout] for c in ErrorCode
    }


async def test_a_retry_waits_for_the_next_epochs_layout_not_for_its_backoff(
    tmp_path: Path,
) -> None:
    # A recovery is under way: the client's layout (epoch 1) is dead and the
    # gateways learn epoch 2 a moment later. The wait before the next attempt
    # ends when the new layout arrives, however long the backoff has grown.
    p, _, db = await _setup(tmp_path)
    source, old = _behind(db)
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, source.publish, p.layout)
    error = TransactionError(ErrorCode.UNAVAILABLE, "sequencer old-seq: connection refused")
    fetches = source.fetches
    # Many transactions waiting for the same new epoch share one long poll.
    waits = [db._after_failure(error, old, backoff=600.0) for _ in range(8)]
    await asyncio.wait_for(asyncio.gather(*waits), 30)
    assert db.layout is p.layout
    assert source.fetches - fetches == 1
    # An error that says nothing about the layout still backs off (briefly here).
    conflict = TransactionError(ErrorCode.NOT_COMMITTED, "conflict")
    fetches = source.fetches
    await db._after_failure(conflict, p.layout, backoff=0.01)
    assert source.fetches == fetches
    await p.close()


async def test_a_call_to_a_silent_old_sequencer_gives_way_to_the_next_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The old leader's node is stopped (no reset): its sequencer never answers,
    # and the call timeout is long. The next epoch goes live meanwhile; the
    # transaction moves to it as soon as the gateways know, not at the timeout.
    monkeypatch.setattr(transaction, "_CALL_TIMEOUT", 600.0)
    p, dialer, db = await _setup(tmp_path)
    source, _ = _behind(db)
    asked = asyncio.Event()

    async def stopped_node(to: WorkerRef, body: Request) -> Response | BaseException | None:
        if to.id != "old-seq":
            return None
        asked.set()
        await asyncio.sleep(600.0)  # as the dialer would, till its timeout
        return TimeoutError()

    dialer.intercept = stopped_node
    runs: list[int] = []
    increment = asyncio.ensure_future(_increment(db, runs))
    await asyncio.wait_for(asked.wait(), 10)
    source.publish(p.layout)
    tr = await asyncio.wait_for(increment, 10)
    assert tr.committed_version is not None and runs == [0]
    assert await _counter(db) == 1
    await p.close()


async def test_a_prompt_answer_starts_no_task_and_a_slow_one_cancelled_from_outside_stays_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every read version, read and commit goes through the epoch race: a call
    # that answers before the race would begin must not pay for a task or a
    # watch, and a caller's own cancel of a slow call is never taken for "a
    # newer epoch came" (which answers None).
    monkeypatch.setattr(transaction, "_CALL_TIMEOUT", 600.0)
    p, dialer, db = await _setup(tmp_path)
    layout = await db.current_layout()
    started: list[str] = []  # the tasks started, by coroutine name
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()

    def counting(lp: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        started.append(coro.__qualname__)
        return asyncio.Task(coro, loop=lp, **kwargs)

    loop.set_task_factory(counting)
    try:
        grv = GetReadVersion(layout.sequencer.id, layout.epoch)
        call = db.dialer.call(layout.sequencer, grv, 5)
        reply = await db._unless_superseded(call, layout.epoch)
    finally:
        loop.set_task_factory(factory)
    assert isinstance(reply, ReadVersion)
    # (The workers behind the dialer start tasks of their own: the sequencer's round.)
    mine = [name for name in started if name in ("Dialer.call", "_Race._watch")]
    assert mine == [], f"tasks started for a prompt answer: {mine}"

    async def silent(to: WorkerRef, body: Request) -> Response | BaseException | None:
        await asyncio.sleep(600.0)
        return TimeoutError()

    dialer.intercept = silent
    slow = asyncio.ensure_future(
        db._unless_superseded(
            db.dialer.call(layout.sequencer, GetReadVersion(layout.sequencer.id, 2), 5),
            layout.epoch,
        )
    )
    await asyncio.sleep(3 * transaction._RACE_AFTER)  # the watch is running by now
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(slow, 10)
    await p.close()


def _read_version_requests(dialer: Dialer) -> list[GetReadVersion]:
    return [b for b in dialer.requests if isinstance(b, GetReadVersion)]


async def test_read_versions_asked_in_one_pass_share_one_request(tmp_path: Path) -> None:
    p, dialer, db = await _setup(tmp_path)
    await db.current_layout()
    asks = (db.transaction().read_version() for _ in range(8))
    versions = await asyncio.wait_for(asyncio.gather(*asks), 10)
    assert len(set(versions)) == 1
    assert len(_read_version_requests(dialer)) == 1, "each transaction sent its own request"
    # An ask alone goes alone, at once.
    assert await db.transaction().read_version() >= versions[0]
    assert len(_read_version_requests(dialer)) == 2
    await p.close()


async def test_an_ask_made_while_a_request_is_out_waits_for_a_newer_one(tmp_path: Path) -> None:
    # A read version must be at least every version committed before it was
    # asked for: an ask made after a commit was acknowledged must not take the
    # answer of a request sent before that commit.
    p, dialer, db = await _setup(tmp_path)
    await db.current_layout()
    release, answered = asyncio.Event(), asyncio.Event()
    held: list[Response] = []

    async def hold_first(to: WorkerRef, body: Request) -> Response | BaseException | None:
        if isinstance(body, GetReadVersion) and not held:
            held.append(await p.dialer.call(to, body, 5.0))  # answered before the commit ...
            answered.set()
            await release.wait()  # ... and held back until after it
            return held[0]
        return None

    dialer.intercept = hold_first
    early = asyncio.ensure_future(db.transaction().read_version())
    await asyncio.wait_for(answered.wait(), 10)

    async def commit() -> Transaction:
        async with db.transaction() as tr:
            tr.set(b"k", b"v")
        return tr

    tr = await asyncio.wait_for(commit(), 10)
    assert tr.committed_version is not None
    late = asyncio.ensure_future(db.transaction().read_version())
    await asyncio.sleep(0.01)  # (a late ask wrongly joined to the early request would wait here)
    release.set()
    early_version, late_version = await asyncio.wait_for(asyncio.gather(early, late), 10)
    assert isinstance(held[0], ReadVersion) and early_version == held[0].version
    assert early_version < tr.committed_version <= late_version
    await p.close()


async def test_a_failed_read_version_request_fails_each_ask_and_a_cancelled_ask_no_other(
    tmp_path: Path,
) -> None:
    p, dialer, db = await _setup(tmp_path)
    await db.current_layout()

    async def unreachable(to: WorkerRef, body: Request) -> Response | BaseException | None:
        if isinstance(body, GetReadVersion):
            return ConnectionRefusedError("sequencer down")
        return None

    dialer.intercept = unreachable
    results = await asyncio.gather(
        *(db.transaction().read_version() for _ in range(3)), return_exceptions=True
    )
    for r in results:
        assert isinstance(r, TransactionError) and r.code is ErrorCode.UNAVAILABLE, r
        assert "sequencer down" in str(r)
    assert len(_read_version_requests(dialer)) == 1

    slow = asyncio.Event()

    async def slowly(to: WorkerRef, body: Request) -> Response | BaseException | None:
        if isinstance(body, GetReadVersion):
            await slow.wait()
        return None

    dialer.intercept = slowly
    asks = [asyncio.ensure_future(db.transaction().read_version()) for _ in range(3)]
    await asyncio.sleep(0.01)
    asks[0].cancel()
    slow.set()
    v1, v2 = await asyncio.wait_for(asyncio.gather(asks[1], asks[2]), 10)
    assert v1 == v2
    with pytest.raises(asyncio.CancelledError):
        await asks[0]
    await p.close()


async def test_a_blind_write_commits_without_a_read_version(tmp_path: Path) -> None:
    # A transaction that reads nothing has nothing for a read version to check;
    # one that reads, or carries an idempotency id (a read at the proxy), asks.
    p, dialer, db = await _setup(tmp_path)
    async with db.transaction() as blind:
        blind.set(b"k", b"1")
        assert await blind.get(b"k") == b"1"  # its own write: no read
    assert blind.committed_version is not None
    assert _read_version_requests(dialer) == []

    async with db.transaction() as reader:
        assert await reader.get(b"k") == b"1"  # it sees the blind write
        reader.set(b"k", b"2")
    assert len(_read_version_requests(dialer)) == 1
    assert reader.committed_version is not None
    assert reader.committed_version > blind.committed_version

    async def put(tr: Transaction) -> None:
        tr.set(b"j", b"x")

    await db.run(put)  # idempotent: its id's conflict key is read
    assert len(_read_version_requests(dialer)) == 2
    assert await _read(db, b"j") == b"x"
    await p.close()


async def _read(db: Database, key: bytes) -> bytes | None:
    async with db.transaction() as tr:
        return await tr.get(key)
