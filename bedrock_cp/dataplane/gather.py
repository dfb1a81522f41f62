"""Asking every log at once, but only until one says no.

A commit (or a read version's confirmation round) needs every log of the
layout. Once one log refuses or fails, the answer is decided; waiting for the
others would let a log whose node is stopped (no reset: its calls last their
whole timeout) hold the answer back — while the next epoch, which has locked
the other logs already, is waiting for these clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def until_refused(
    aws: Sequence[Awaitable[T]], accepted: Callable[[T], bool]
) -> list[T | BaseException | None]:
    """Each awaitable's result (or exception), in order, until one is not
    ``accepted``; the ones still running then are cancelled and give None."""
    if not aws:
        return []
    loop = asyncio.get_running_loop()
    results: list[T | BaseException | None] = [None] * len(aws)
    decided: asyncio.Future[None] = loop.create_future()
    left = len(aws)

    # Each answer is recorded by the task that awaited it, and the last one
    # needed wakes the caller: one wake-up per round, however many answer,
    # where asyncio.wait took a done callback and a new wait per answer.
    async def one(i: int, aw: Awaitable[T]) -> None:
        nonlocal left
        outcome: T | BaseException
        try:
            outcome = await aw
        except asyncio.CancelledError:
            raise  # by the round: it is decided, or its caller was cancelled
        except BaseException as exc:
            outcome = exc
        results[i] = outcome
        left -= 1
        try:
            refused = isinstance(outcome, BaseException) or not accepted(outcome)
        except Exception as exc:  # a failing check refuses
            results[i], refused = exc, True
        if (refused or left == 0) and not decided.done():
            decided.set_result(None)

    tasks = [loop.create_task(one(i, aw)) for i, aw in enumerate(aws)]
    try:
        await decided
    finally:
        for task in tasks:
            task.cancel()  # a no-op for the ones that finished
    return list(results)
