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
    tasks = [asyncio.ensure_future(a) for a in aws]
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not all(t.exception() is None and accepted(t.result()) for t in done):
                break
    finally:
        for task in pending:
            task.cancel()
    return [None if t in pending else (t.exception() or t.result()) for t in tasks]
