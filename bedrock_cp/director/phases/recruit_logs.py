"""``recruit_logs`` — log recruitment: new logs for the new generation.

``desired_logs`` new workers (new ids: never an old-generation log, which this
epoch reads from), created through the Foremen round-robin over the nodes with
the ``log`` capability. Each is recorded in the attempt as soon as it exists,
so a rollback removes it. ``replay_logs`` then makes each one a member of this epoch.
"""

from __future__ import annotations

from ..attempt import Attempt
from ..context import LOG, RecoveryContext
from ._placement import create_round_robin


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    assert attempt.vacancies is not None, "vacancies describes the vacancies first"
    attempt.logs = await create_round_robin(attempt, ctx, LOG, attempt.vacancies.logs)
