"""Deterministic simulation: the real node code on a virtual clock and network.

- :mod:`.loop` — :class:`VirtualClockLoop`: an asyncio loop whose time jumps to
  the next timer instead of waiting, and :class:`InlineExecutor` so that "off
  loop" work (WAL writes) happens in a deterministic order.
- :mod:`.network` — :class:`SimNetwork`: in-memory delivery between nodes with
  seeded latency, partitions and crashes, plugged in through
  ``Node.start(network_factory=...)``.

The same seed gives the same run, event for event.
"""

from .loop import InlineExecutor, VirtualClockLoop, run_simulation
from .network import SimNetwork

__all__ = ["InlineExecutor", "SimNetwork", "VirtualClockLoop", "run_simulation"]
