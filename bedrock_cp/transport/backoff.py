"""Capped exponential backoff with jitter, for reconnecting to peers.

The delay before attempt ``n`` is drawn from ``[c/2, c]`` where
``c = min(cap, base * 2**n)``: it grows fast while a peer stays down, never
exceeds ``cap`` (a restarted peer is found within ``cap``), and the jitter keeps
every node from reconnecting in lockstep. The rng is injected for reproducibility.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays for successive reconnect attempts; stateless apart from the rng."""

    __slots__ = ("base", "cap", "rng")

    def __init__(self, base: float, cap: float, rng: random.Random) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self.rng = rng

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (0 for the first retry)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt, 60))
        return ceiling / 2 + self.rng.random() * ceiling / 2
