"""``validate_layout`` — layout validation: decode the last stored TSL.

A corrupt TSL stalls (the reason says what is wrong: an operator or a newer
Director must act); no TSL at all means a new cluster, which skips locking,
recovery planning and replay (initialization).
"""

from __future__ import annotations

import msgspec

from ...protocol import decode_layout
from ..attempt import Attempt, Stall
from ..context import RecoveryContext


def check(layout_epoch: int, epoch: int) -> str | None:
    """Why a stored layout of ``layout_epoch`` cannot precede ``epoch``, or None."""
    if layout_epoch >= epoch:
        return f"the stored layout is of epoch {layout_epoch}, not older than {epoch}"
    return None


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    stored = await ctx.stored_layout()
    if stored is None:
        attempt.old_layout = None
        attempt.new_cluster = True
        return
    try:
        layout = decode_layout(stored)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Stall(f"corrupt layout: {exc}") from exc
    if why := check(layout.epoch, attempt.epoch):
        raise Stall(f"corrupt layout: {why}")
    if not layout.logs:
        raise Stall("corrupt layout: it lists no logs")
    if not layout.storage or any(not team.replicas for team in layout.storage):
        raise Stall("corrupt layout: a storage team lists no replica")
    attempt.old_layout = layout
    attempt.new_cluster = False
