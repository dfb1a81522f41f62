"""``vacancies`` — vacancies and version determination: the new layout, with placeholders.

``desired_logs`` new logs, the old storage teams kept (a new cluster gets
``storage_replicas`` new replicas serving the whole user key space),
``resolvers`` resolvers splitting ``[b"", b"\\xff")`` into equal first-byte
slices, ``commit_proxies`` proxies, the sequencer on this node, and the version
the epoch starts at: ``recovery_version`` (0 for a new cluster).
"""

from __future__ import annotations

from ...protocol import SYSTEM_PREFIX, KeyRange
from ..attempt import Attempt, Vacancies
from ..context import RecoveryContext


def split_key_space(n: int) -> list[KeyRange]:
    """``n`` contiguous ranges covering ``[b"", b"\\xff")``, split on the first byte."""
    assert 1 <= n <= 255
    bounds = [b""] + [bytes([i * 255 // n]) for i in range(1, n)] + [SYSTEM_PREFIX]
    return [KeyRange(bounds[i], bounds[i + 1]) for i in range(n)]


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    p = ctx.parameters
    if attempt.new_cluster:
        attempt.recovery_version = 0
        attempt.first_version = 1
    old = attempt.old_layout
    attempt.vacancies = Vacancies(
        logs=p.desired_logs,
        storage=list(old.storage) if old is not None else [],
        new_storage=p.storage_replicas if old is None else 0,
        resolver_ranges=split_key_space(p.resolvers),
        proxies=p.commit_proxies,
        sequencer_node=ctx.node,
        start_version=attempt.recovery_version,
    )
