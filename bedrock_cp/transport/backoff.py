"""Capped exponential backoff with jitter: the one pause rule between retries.

The delay before retry ``n`` is drawn from ``[c/2, c]`` where
``c = min(cap, base * 2**n)``: it grows fast while the other side stays down,
never exceeds ``cap`` (a peer back is found within ``cap``), and the jitter
keeps many retriers (nodes reconnecting, clients, Directors) from moving in
lockstep. Peer links, the coordinator-connection layer, a Director's attempts
and epochs, and a transaction's retries all use it. The rng is injected for
reproducibility.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays for successive retries; stateless apart from the rng."""

    __slots__ = ("base", "cap", "rng")

    def __init__(self, base: float, cap: float, rng: random.Random) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self.rng = rng

    def ceiling(self, attempt: int) -> float:
        """The longest :meth:`delay` can be before retry ``attempt``."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt, 0), 60))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + self.rng.random() * ceiling / 2
