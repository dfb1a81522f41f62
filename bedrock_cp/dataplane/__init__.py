"""The reference data plane: a small but real transactional key-value store.

- :mod:`.worker` — the ``Worker`` and ``Dialer`` protocols.
- :mod:`.log` — :class:`LogWorker`: durable chained commit batches on the native WAL,
  discarded once every replica it serves made them durable.
- :mod:`.storage` — :class:`StorageWorker`: MVCC reads, checkpoints of committed
  versions (:mod:`.engine`, SQLite) under an in-memory window (:mod:`.mvcc`), fills.
- :mod:`.sequencer` — :class:`Sequencer`: commit and read versions of one epoch.
- :mod:`.resolver` — :class:`Resolver`: read-write conflicts for one key range.
- :mod:`.commit_proxy` — :class:`CommitProxy`: batches, resolves, pushes, acknowledges.
- :mod:`.loopback` — :class:`LoopbackDialer`: the in-process network of tests.
- helpers: :mod:`.mvcc` (the MVCC window), :mod:`.engine` (the durable base),
  :mod:`.pulse` (long-poll wakeups), :mod:`.statefile` (small durable records).

What the workers answer (their requests, replies and the layout) is declared in
:mod:`bedrock_cp.protocol`.
"""

from .commit_proxy import CommitProxy
from .log import LogWorker
from .loopback import LoopbackDialer, StoppableWorker
from .resolver import Resolver
from .sequencer import Sequencer
from .storage import StorageWorker

__all__ = [
    "CommitProxy",
    "LogWorker",
    "LoopbackDialer",
    "Resolver",
    "Sequencer",
    "StorageWorker",
]


def _conform(
    log: LogWorker, storage: StorageWorker, seq: Sequencer, res: Resolver, proxy: CommitProxy
) -> list[StoppableWorker]:
    """Never called: mypy checks here that every worker class is a Worker."""
    return [log, storage, seq, res, proxy]
