"""The recovery phases, one module each, in the order a Director runs them.

Each exposes ``async def run(attempt, ctx) -> None``: it records its decisions
in the :class:`~bedrock_cp.director.attempt.Attempt` or raises ``Stall`` /
``Fail``. A new cluster (no stored layout) skips locking, recovery planning
and replay of old logs (:data:`SKIPPED_FOR_NEW_CLUSTER`); its new logs still
get an empty replay, which fences them with this epoch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..attempt import Attempt
from ..context import RecoveryContext
from . import (
    build_layout,
    lock_logs,
    monitor,
    persist,
    plan_log_recovery,
    recruit_logs,
    recruit_storage,
    replay_logs,
    start_roles,
    vacancies,
    validate_layout,
)

Phase = Callable[[Attempt, RecoveryContext], Awaitable[None]]

#: (name, run), in order.
PHASES: list[tuple[str, Phase]] = [
    ("validate_layout", validate_layout.run),
    ("lock_logs", lock_logs.run),
    ("plan_log_recovery", plan_log_recovery.run),
    ("vacancies", vacancies.run),
    ("recruit_logs", recruit_logs.run),
    ("recruit_storage", recruit_storage.run),
    ("replay_logs", replay_logs.run),
    ("start_roles", start_roles.run),
    ("build_layout", build_layout.run),
    ("monitor", monitor.run),
    ("persist", persist.run),
]
PHASE_NAMES: list[str] = [name for name, _ in PHASES]

#: Phases that only make sense with an old layout.
SKIPPED_FOR_NEW_CLUSTER: frozenset[str] = frozenset({"lock_logs", "plan_log_recovery"})
