"""Driver of the native Raft core: the Ready loop, in the order the core requires.

- :mod:`.driver` — :class:`RaftDriver`: persist, then send, then apply, then advance.
- :mod:`.local_group` — :class:`LocalGroup`: N drivers in one process over an
  in-memory bus with real WALs, for tests, the demo and benchmarks.
"""

from .driver import RaftDriver, StateMachine
from .local_group import LocalGroup, Member, RecordingStateMachine

__all__ = ["LocalGroup", "Member", "RaftDriver", "RecordingStateMachine", "StateMachine"]
