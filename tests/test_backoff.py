"""The one pause rule between retries (transport.Backoff), shared by peer links,
the coordinator-connection layer, Directors and transactions."""

from __future__ import annotations

import random

import pytest

from bedrock_cp.transport import Backoff


def test_each_delay_lies_in_the_upper_half_of_a_ceiling_that_doubles_to_its_cap() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    b = Backoff(0.005, 0.5, random.Random(seed))
    ceilings = [b.ceiling(n) for n in range(12)]
    assert ceilings[:3] == [0.005, 0.01, 0.02]
    assert ceilings[-1] == 0.5 and max(ceilings) == 0.5
    for n in range(200):
        d = b.delay(n)
        assert b.ceiling(n) / 2 <= d <= b.ceiling(n), (n, d)


def test_extreme_attempt_numbers_stay_within_base_and_cap() -> None:
    b = Backoff(0.01, 2.0, random.Random(1))
    assert b.ceiling(-3) == 0.01  # before the first retry: the base
    assert b.ceiling(10**9) == 2.0  # no overflow however long a peer stays down
    assert 1.0 <= b.delay(10**9) <= 2.0


def test_bad_bounds_are_refused() -> None:
    for base, cap in [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)]:
        with pytest.raises(ValueError, match="need 0 < base <= cap"):
            Backoff(base, cap, random.Random(0))
