"""Deterministic simulation: the real node code on virtual time, network and disk.

- :mod:`.loop` — :class:`VirtualClockLoop`: an asyncio loop whose time jumps to
  the next timer instead of waiting; :class:`InlineExecutor` and
  :class:`DiskExecutor` (which can be slow) so that "off loop" disk work
  happens in a deterministic order.
- :mod:`.clock` — :class:`SimClock`: one node's virtual clock, which a fault
  can make run fast or slow.
- :mod:`.network` — :class:`SimNetwork`: in-memory delivery of Raft messages
  and requests between nodes and clients, with seeded latency and faults
  (crashes, partitions one way or both, drops, duplicates, delays), plugged
  in through ``Node.start(network_factory=...)`` and ``channel=`` of clients.

The disk is the native :class:`~bedrock_cp_native.MemDisk` (``Node.start(
disk=...)``), which loses unsynced writes on ``power_loss``, forgets a dead
process's handles on ``crash`` and fails on ``set_fault``. The same seed gives
the same run, event for event. The whole-cluster simulation built from these
(workloads, faults, checkers) is in ``tests/sim``.
"""

from .clock import SimClock
from .loop import DiskExecutor, InlineExecutor, VirtualClockLoop, run_simulation
from .network import Faults, SimChannel, SimEndpoint, SimNetwork

__all__ = [
    "DiskExecutor",
    "Faults",
    "InlineExecutor",
    "SimChannel",
    "SimClock",
    "SimEndpoint",
    "SimNetwork",
    "VirtualClockLoop",
    "run_simulation",
]
