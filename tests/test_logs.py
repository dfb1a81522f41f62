"""Node-process logging: repeated messages are rate-limited, with a count."""

from __future__ import annotations

import logging

from bedrock_cp.cli.logs import RateLimitFilter


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("bedrock_cp.director", logging.INFO, __file__, 1, msg, args, None)


def test_a_repeated_message_passes_a_burst_per_window_then_says_how_many_were_dropped() -> None:
    now = [0.0]
    f = RateLimitFilter(burst=3, window=10.0, clock=lambda: now[0])
    passed = [f.filter(_record("attempt %d stalled: %s", i, "no logs")) for i in range(100)]
    assert passed.count(True) == 3 and passed[:3] == [True] * 3
    # Another message is not held back by the first one.
    assert f.filter(_record("node %d registered", 1))
    now[0] = 10.0
    first = _record("attempt %d stalled: %s", 100, "no logs")
    assert f.filter(first)
    assert first.getMessage() == "attempt 100 stalled: no logs [97 similar messages suppressed]"


def test_the_filter_tracks_a_bounded_number_of_templates() -> None:
    f = RateLimitFilter(burst=1, max_keys=10, clock=lambda: 0.0)
    for i in range(1000):
        assert f.filter(_record(f"message {i}"))
    assert len(f._seen) == 10
