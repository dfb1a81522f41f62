"""Pulse: the long poll every data-plane worker waits on."""

from __future__ import annotations

import asyncio

from bedrock_cp.dataplane.pulse import Pulse


async def test_a_waiter_cancelled_as_the_pulse_fires_ends_cancelled() -> None:
    """A task that accepted a cancellation must end cancelled, even when the
    condition came true in the same loop iteration (Python 3.11's ``wait_for``
    returned the answer then, and a storage puller told to stop went on
    applying batches under a layout it no longer served)."""
    accepted = 0
    for k in range(6):
        pulse, state = Pulse(), {"fired": False}
        waiter = asyncio.ensure_future(pulse.wait_for(lambda s=state: s["fired"], 10.0))
        await asyncio.sleep(0)  # waiting now
        state["fired"] = True
        pulse.fire()
        for _ in range(k):
            await asyncio.sleep(0)
        if waiter.cancel():
            accepted += 1
            try:
                result = await waiter
            except asyncio.CancelledError:
                continue
            raise AssertionError(f"cancelled after {k} iterations, returned {result}")
        assert await waiter is True
    assert accepted >= 1  # the race was exercised (k = 0: the same iteration)


async def test_a_waiter_times_out_with_the_conditions_last_value() -> None:
    pulse = Pulse()
    assert await pulse.wait_for(lambda: False, 0.01) is False
    state = {"n": 0}

    def fire() -> None:  # in the next loop iteration, once the waiter waits
        state["n"] = 1
        pulse.fire()

    asyncio.get_running_loop().call_soon(fire)
    assert await pulse.wait_for(lambda: state["n"] == 1, 5.0) is True
