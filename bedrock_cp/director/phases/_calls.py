"""Helpers the phases share: parallel calls and reading their answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ...protocol import NewerEpoch, Request, Response, WorkerRef
from ..attempt import Fail
from ..context import RecoveryContext

#: An answer, or why there is none (unreachable, timed out).
Answer = Response | str


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
        return "timed out"
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
    timeout: float,  # noqa: ASYNC109
) -> list[Answer]:
    """:func:`call_one` on every target in parallel, answers in order.

    Every call finishes before a ``Fail`` (from any of them) is raised.
    """
    results = await asyncio.gather(
        *(call_one(ctx, ref, body, timeout) for ref, body in calls), return_exceptions=True
    )
    answers: list[Answer] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        answers.append(result)
    return answers


def names(refs: Sequence[WorkerRef]) -> str:
    return ", ".join(f"{r.id}@{r.node}" for r in refs)
