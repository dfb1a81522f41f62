"""``build_layout`` — layout: validate the new TSL, then unlock the proxies with the token.

The layout must be whole before anyone commits through it: this epoch, every
role present, resolvers covering the user key space exactly, every storage
team with a replica, and no log of the old generation among the new logs.
"""

from __future__ import annotations

from ...protocol import SYSTEM_PREFIX, Done, Layout, StorageTeam, UnlockProxy
from ..attempt import Attempt, Stall
from ..context import RecoveryContext
from ._calls import call_all
from .start_roles import compose


def _covers(ranges: list[tuple[bytes, bytes]]) -> bool:
    """Do the ranges tile ``[b"", b"\\xff")`` in order, without gap or overlap?"""
    at = b""
    for begin, end in ranges:
        if begin != at or end <= begin:
            return False
        at = end
    return at == SYSTEM_PREFIX


def _storage_covers(teams: list[StorageTeam]) -> bool:
    return _covers(sorted((t.begin, t.end) for t in teams))


def check(layout: Layout, *, epoch: int, old: Layout | None) -> str | None:
    """Why ``layout`` is not a valid TSL of ``epoch`` succeeding ``old``, or None."""
    if layout.epoch != epoch:
        return f"layout epoch {layout.epoch} is not {epoch}"
    if old is not None and layout.recovery_version < old.recovery_version:
        return f"recovery version {layout.recovery_version} < previous {old.recovery_version}"
    if not layout.logs or not layout.proxies or not layout.resolvers:
        return "the layout lacks logs, proxies or resolvers"
    if not _covers([(r.begin, r.end) for r in layout.resolvers]):
        return "resolvers do not cover the user key space exactly"
    if not layout.storage or any(not t.replicas for t in layout.storage):
        return "a storage team has no replica"
    if not _storage_covers(layout.storage):
        return "storage teams do not cover the user key space"
    if old is not None and {r.id for r in old.logs} & {r.id for r in layout.logs}:
        return "an old-generation log is in the new layout"
    ids = [layout.sequencer.id, *(r.id for r in layout.proxies)]
    ids += [r.worker.id for r in layout.resolvers] + [r.id for r in layout.logs]
    if len(set(ids)) != len(ids):
        return "a worker id appears twice"
    return None


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    layout = compose(attempt)
    if layout != attempt.layout:
        raise Stall("the layout changed after the roles were started")
    if why := check(layout, epoch=attempt.epoch, old=attempt.old_layout):
        raise Stall(f"invalid new layout: {why}")
    answers = await call_all(
        ctx,
        [(p, UnlockProxy(p.id, attempt.epoch, attempt.token)) for p in layout.proxies],
        ctx.parameters.call_timeout,
    )
    failed = [f"{p.id}: {a}" for p, a in zip(layout.proxies, answers, strict=True) if a != Done()]
    if failed:
        raise Stall(f"could not unlock proxies: {'; '.join(failed)}")
