"""Rollback: stop everything an attempt started, so a stalled or failed attempt
leaves no orphan components.

Roles first (a proxy must not push to a log being removed), newest first;
then the workers the attempt created. Each removal is tried even if another
fails; what could not be removed is returned (and reported by the Director).
Old-generation logs are not touched: they are locked, and the next attempt
(or epoch) reads from them again. Nor are the workers of a layout the attempt
sent to be stored (:attr:`~.attempt.Attempt.layout_offered`): that layout may
be the stored one, and the next epoch must lock its logs and read its
storage; if it was not stored, they are orphans, which the next live epoch
retires. Nor are the workers on a node the attempt found silent
(:attr:`~.attempt.Attempt.silent`: stopped, no reset): a removal there would
hold the next attempt for a call timeout; they are reported as left over,
orphans a later epoch retires (a log there belongs to no layout).
"""

from __future__ import annotations

import logging

from .attempt import Attempt
from .context import RecoveryContext

log = logging.getLogger(__name__)


async def rollback(attempt: Attempt, ctx: RecoveryContext) -> list[str]:
    """Undo ``attempt``'s roles and workers; returns what could not be removed."""
    leftovers: list[str] = []
    for ref in reversed(attempt.started_roles):
        try:
            await ctx.stop_role(ref)
        except Exception as exc:
            log.warning("rollback: stop_role %s failed: %s", ref.id, exc)
            leftovers.append(f"{ref.kind} {ref.id}: {exc}")
    attempt.started_roles = []
    kept: set[str] = set()
    if attempt.layout_offered and attempt.layout is not None:
        layout = attempt.layout
        kept = {r.id for r in layout.logs} | {
            r.id for team in layout.storage for r in team.replicas
        }
    for ref in reversed(attempt.created_workers):
        if ref.id in kept:
            continue
        if ref.node in attempt.silent:
            leftovers.append(f"{ref.kind} {ref.id}: node {ref.node} silent, left to retire")
            continue
        try:
            await ctx.remove_worker(ref)
        except Exception as exc:
            log.warning("rollback: remove_worker %s failed: %s", ref.id, exc)
            leftovers.append(f"{ref.kind} {ref.id}: {exc}")
    attempt.created_workers = []
    return leftovers
