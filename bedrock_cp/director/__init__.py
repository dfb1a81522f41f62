"""The Director: one per epoch, rebuilds the transaction system.

- :mod:`.context` — :class:`RecoveryContext`, the injected effects (and :class:`Parameters`).
- :mod:`.attempt` — :class:`Attempt`, the phases' shared decisions; ``Stall``/``Fail``;
  the outcomes :class:`Completed`, :class:`Stalled`, :class:`Failed`.
- :mod:`.phases` — the recovery phases, one module each; :class:`RecoveryPhase`
  names them and gives their order.
- :mod:`.rollback` — undo an attempt (no orphan components).
- :mod:`.retire` — once live: remove what older epochs left (recorded first).
- :mod:`.distribution` — replace storage replicas lost for good.
- :mod:`.director` — :class:`Director`: attempts, retries, events, fail-fast watching.
- :mod:`.status` — :class:`RecoveryStatus`: state, phase and timeline for ``status --json``.
- :mod:`.host` — :class:`~.host.DirectorHost`: one Director per epoch on the leader's node,
  with a :class:`~.node_context.NodeRecoveryContext` (:mod:`.node_context`), the effects
  on a real node.
"""

from .attempt import Attempt, Completed, Fail, Failed, Outcome, PhaseEvent, Stall, Stalled
from .context import NodeInfo, Parameters, RecoveryContext, Superseded
from .director import Director
from .distribution import ReplicaHealth
from .phases import RecoveryPhase
from .status import RecoveryStatus

__all__ = [
    "Attempt",
    "Completed",
    "Director",
    "Fail",
    "Failed",
    "NodeInfo",
    "Outcome",
    "Parameters",
    "PhaseEvent",
    "RecoveryContext",
    "RecoveryPhase",
    "RecoveryStatus",
    "ReplicaHealth",
    "Stall",
    "Stalled",
    "Superseded",
]
