"""Checked histories: record what clients saw, then judge it.

Pure functions over recorded operations, shared by the chaos tests on real
processes and by simulations:

- :mod:`.history` — :class:`Op`, :class:`History` (the recorder), JSON lines;
- :mod:`.linearizable` — the directory as one register per service id;
- :mod:`.list_append` — strict serializability of list-append transactions;
- :mod:`.bank` — the bank-transfer invariant;
- :mod:`.invariants` — what polling node status can tell (leaders, terms, epochs, RSS).
"""

from .bank import check_bank
from .history import History, Op, Outcome, Pending, dump, load, make_op
from .invariants import NodeSample, StateSample, Watch, check_samples
from .linearizable import ABSENT, check_directory, check_register
from .list_append import APPEND, READ, check_list_append
from .result import Anomaly, CheckResult

__all__ = [
    "ABSENT",
    "APPEND",
    "READ",
    "Anomaly",
    "CheckResult",
    "History",
    "NodeSample",
    "Op",
    "Outcome",
    "Pending",
    "StateSample",
    "Watch",
    "check_bank",
    "check_directory",
    "check_list_append",
    "check_register",
    "check_samples",
    "dump",
    "load",
    "make_op",
]
