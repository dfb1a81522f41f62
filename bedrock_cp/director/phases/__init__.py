"""The recovery phases, one module each; :class:`RecoveryPhase` names them and
gives their order.

Each module exposes ``async def run(attempt, ctx) -> None``: it records its
decisions in the :class:`~bedrock_cp.director.attempt.Attempt` or raises
``Stall`` / ``Fail``. A new cluster (no stored layout) skips locking and
recovery planning (:attr:`RecoveryPhase.skipped_for_new_cluster`); its new
logs still get an empty replay, which fences them with this epoch.

In order: ``validate_layout``, ``lock_logs``, ``plan_log_recovery``,
``vacancies``, ``recruit_logs``, ``recruit_storage``, ``replay_logs``,
``start_roles``, ``build_layout``, ``monitor``, ``persist``.
"""

from __future__ import annotations

import enum
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


class RecoveryPhase(enum.StrEnum):
    """The recovery phases, in the order a Director runs them: the one source of
    their names (the value: what events, the status, ``pause_before`` and the
    docs use) and of their order (:attr:`number`, from 1)."""

    VALIDATE_LAYOUT = "validate_layout"
    LOCK_LOGS = "lock_logs"
    PLAN_LOG_RECOVERY = "plan_log_recovery"
    VACANCIES = "vacancies"
    RECRUIT_LOGS = "recruit_logs"
    RECRUIT_STORAGE = "recruit_storage"
    REPLAY_LOGS = "replay_logs"
    START_ROLES = "start_roles"
    BUILD_LAYOUT = "build_layout"
    MONITOR = "monitor"
    PERSIST = "persist"

    @property
    def number(self) -> int:
        """Its place in the order, from 1."""
        return _ORDER[self]

    @property
    def run(self) -> Phase:
        """The phase's ``run(attempt, ctx)``."""
        return _RUN[self]

    @property
    def skipped_for_new_cluster(self) -> bool:
        """Only meaningful with an old layout: a new cluster skips it."""
        return self in (RecoveryPhase.LOCK_LOGS, RecoveryPhase.PLAN_LOG_RECOVERY)

    @classmethod
    def named(cls, name: str) -> RecoveryPhase:
        """The phase called ``name``; ValueError naming the phases if none is."""
        try:
            return cls(name)
        except ValueError:
            raise ValueError(
                f"no recovery phase named {name!r} (phases: {', '.join(cls)})"
            ) from None


_ORDER: dict[RecoveryPhase, int] = {p: i for i, p in enumerate(RecoveryPhase, start=1)}
_RUN: dict[RecoveryPhase, Phase] = {
    RecoveryPhase.VALIDATE_LAYOUT: validate_layout.run,
    RecoveryPhase.LOCK_LOGS: lock_logs.run,
    RecoveryPhase.PLAN_LOG_RECOVERY: plan_log_recovery.run,
    RecoveryPhase.VACANCIES: vacancies.run,
    RecoveryPhase.RECRUIT_LOGS: recruit_logs.run,
    RecoveryPhase.RECRUIT_STORAGE: recruit_storage.run,
    RecoveryPhase.REPLAY_LOGS: replay_logs.run,
    RecoveryPhase.START_ROLES: start_roles.run,
    RecoveryPhase.BUILD_LAYOUT: build_layout.run,
    RecoveryPhase.MONITOR: monitor.run,
    RecoveryPhase.PERSIST: persist.run,
}
assert set(_RUN) == set(RecoveryPhase)
