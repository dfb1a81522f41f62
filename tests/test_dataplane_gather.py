"""``until_refused``: every log asked at once, the first refusal decides."""

from __future__ import annotations

import asyncio

import pytest

from bedrock_cp.dataplane.gather import until_refused


async def _answer(value: str, after: float) -> str:
    await asyncio.sleep(after)
    return value


async def _fail(after: float) -> str:
    await asyncio.sleep(after)
    raise OSError("unreachable")


def _ok(value: str) -> bool:
    return value == "ok"


async def test_every_answer_in_order_when_all_accept() -> None:
    got = await until_refused([_answer("ok", 0.02), _answer("ok", 0), _answer("ok", 0.01)], _ok)
    assert got == ["ok", "ok", "ok"]
    assert await until_refused([], _ok) == []


async def test_the_first_refusal_decides_and_the_slow_ones_are_cancelled() -> None:
    cancelled = asyncio.Event()

    async def stopped_node() -> str:
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "ok"

    got = await asyncio.wait_for(
        until_refused([_answer("ok", 0), _answer("no", 0.01), stopped_node()], _ok), 10
    )
    assert got == ["ok", "no", None]
    await asyncio.wait_for(cancelled.wait(), 10)


async def test_an_error_is_a_refusal_and_is_returned() -> None:
    got = await asyncio.wait_for(until_refused([_fail(0), _answer("ok", 600)], _ok), 10)
    assert isinstance(got[0], OSError) and got[1] is None


async def test_a_cancelled_caller_cancels_every_call() -> None:
    running = 0
    cancelled = 0
    all_running = asyncio.Event()

    async def call() -> str:
        nonlocal running, cancelled
        running += 1
        if running == 3:
            all_running.set()
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return "ok"

    gathering = asyncio.get_running_loop().create_task(
        until_refused([call() for _ in range(3)], _ok)
    )
    await asyncio.wait_for(all_running.wait(), 10)
    gathering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gathering
    await asyncio.sleep(0)
    assert cancelled == 3


async def test_one_wake_up_of_the_caller_per_round() -> None:
    # However many calls answer, the caller resumes once (asyncio.wait resumed
    # it once per answer, each time with a new wait).
    resumed = 0

    class Counting:
        def __await__(self):  # type: ignore[no-untyped-def]
            nonlocal resumed
            inner = until_refused([_answer("ok", i / 100) for i in range(5)], _ok).__await__()
            value = None
            try:
                while True:
                    yielded = inner.send(value)
                    value = yield yielded
                    resumed += 1
            except StopIteration as stop:
                return stop.value

    assert await Counting() == ["ok"] * 5
    assert resumed == 1
