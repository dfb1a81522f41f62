"""Helpers the phases share: parallel calls and reading their answers.

A node that is stopped rather than dead (SIGSTOP, a hung host) resets no
connection: a call to it lasts its whole timeout. A phase that needs only
some of its targets (one of the old logs, a live replica per team)
uses :func:`call_quorum` / :func:`until_enough`: once enough answered, the
others get as long again as that took (at least :data:`STRAGGLER_GRACE`),
so a silent node delays a recovery by a fraction of a second, not by a
timeout per phase.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ...protocol import NewerEpoch, Request, Response, WorkerRef
from ..attempt import Attempt, Fail
from ..context import RecoveryContext

#: An answer, or why there is none (unreachable, timed out).
Answer = Response | str
#: The least time stragglers get once enough targets answered (seconds).
STRAGGLER_GRACE = 0.05
#: What a call cut off by :func:`call_quorum` answers.
CUT_OFF = "no answer (cut off: enough others answered)"
#: What a call that outlasted its timeout answers.
TIMED_OUT = "timed out"

T = TypeVar("T")


async def call_one(
    ctx: RecoveryContext,
    ref: WorkerRef,
    body: Request,
    timeout: float,  # noqa: ASYNC109
) -> Answer:
    """``ctx.call`` with the deadline enforced here too; any failure becomes its
    reason (one line), never an exception.

    A ``NewerEpoch`` answer raises :class:`Fail`: this Director is superseded.
    """
    try:
        async with asyncio.timeout(timeout):
            answer = await ctx.call(ref, body, timeout)
    except TimeoutError:
        return TIMED_OUT
    except OSError as exc:
        return f"unreachable ({type(exc).__name__}: {exc})"
    except Exception as exc:  # a transport error answer, an undecodable one: a reason too
        return f"failed ({type(exc).__name__}: {exc})"
    if isinstance(answer, NewerEpoch):
        raise Fail(f"superseded by epoch {answer.epoch}")
    return answer


async def call_all(
    ctx: RecoveryContext,
    calls: Sequence[tuple[WorkerRef, Request]],
    timeout: float | Sequence[float],  # noqa: ASYNC109
) -> list[Answer]:
    """:func:`call_one` on every target in parallel, answers in order; ``timeout``
    for each, or one per call.

    Every call finishes before a ``Fail`` (from any of them) is raised.
    """
    timeouts = [timeout] * len(calls) if isinstance(timeout, (int, float)) else timeout
    results = await asyncio.gather(
        *(call_one(ctx, ref, body, t) for (ref, body), t in zip(calls, timeouts, strict=True)),
        return_exceptions=True,
    )
    answers: list[Answer] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        answers.append(result)
    return answers


async def until_enough(
    aws: Sequence[Awaitable[T]],
    *,
    need: int,
    ok: Callable[[T], bool],
    grace: float | None = None,
    hopeless: Sequence[bool] = (),
) -> list[T | None]:
    """Await ``aws`` at once; results in order, None for those cut off.

    Once ``need`` (at least one) of them returned a result ``ok`` accepts, the
    rest get as long again as that took (at least ``grace``, by default
    :data:`STRAGGLER_GRACE`) and are then
    cancelled; those marked in ``hopeless`` (their node was silent already)
    get no grace. An exception (a :class:`Fail`) is raised once every
    awaitable has ended.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks = [asyncio.ensure_future(a) for a in aws]
    pending = set(tasks)
    good = 0
    try:
        while pending and good < max(1, need):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            good += sum(1 for t in done if t.exception() is None and ok(t.result()))
        hoping = {t for i, t in enumerate(tasks) if t in pending and not _marked(hopeless, i)}
        if hoping:
            floor = STRAGGLER_GRACE if grace is None else grace
            await_for = max(floor, loop.time() - started)
            await asyncio.wait(hoping, timeout=await_for)
        pending = {t for t in tasks if not t.done()}
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return [None if t.cancelled() else t.result() for t in tasks]


async def call_quorum(
    attempt: Attempt,
    ctx: RecoveryContext,
    calls: Sequence[tuple[WorkerRef, Request]],
    timeout: float,  # noqa: ASYNC109
    *,
    need: int,
    answered: Callable[[Answer], bool],
) -> list[Answer]:
    """:func:`call_all`, but once ``need`` targets ``answered``, stragglers are
    cut off (see :func:`until_enough`; one to a node already in
    :attr:`Attempt.silent` gets no grace); a cut-off call answers
    :data:`CUT_OFF` and its node joins :attr:`Attempt.silent`."""
    answers = await until_enough(
        [call_one(ctx, ref, body, timeout) for ref, body in calls],
        need=need,
        ok=answered,
        hopeless=[ref.node in attempt.silent for ref, _ in calls],
    )
    attempt.silent.update(ref.node for (ref, _), a in zip(calls, answers, strict=True) if a is None)
    return [CUT_OFF if a is None else a for a in answers]


def majority(n: int) -> int:
    return n // 2 + 1


def all_but_one(n: int) -> int:
    """How many of ``n`` storage replicas to hear from before stragglers are cut
    off: one silent node at a time is not waited for (a team of two included)."""
    return max(1, n - 1)


def names(refs: Sequence[WorkerRef]) -> str:
    return ", ".join(f"{r.id}@{r.node}" for r in refs)


def _marked(flags: Sequence[bool], i: int) -> bool:
    return i < len(flags) and flags[i]
