"""``monitor`` — monitoring before going live: every component must answer ``Health``.

The sequencer, resolvers, proxies, new logs and the storage replicas that
serve reads (absent team members are not checked). Any missing one stalls the
attempt (rollback, retry) rather than storing a layout that is already broken.
Each has :data:`HEALTH_TIMEOUT` to answer (or the call timeout, if shorter),
as in the live epoch's watch: a node stopped since it was recruited (SIGSTOP,
no reset) holds the attempt that long, not a call timeout.
:func:`dead` is also what the Director's watch calls once the epoch is live
(on the components whose node does not vouch for itself, and now and then on
the others: see :meth:`~bedrock_cp.director.director.Director._health_checks`):
a death then ends the Director (fail fast, the next epoch recovers).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...protocol import Done, Health, Layout, WorkerRef
from ..attempt import Attempt, Stall
from ..context import RecoveryContext
from ._calls import TIMED_OUT, call_all

#: Seconds a component has to answer ``Health``: commits stall while a log is
#: silent, so this bounds how long a stopped node stalls them (the live
#: epoch's watch: ``Director(health_timeout=...)``), and how long it holds
#: this phase.
HEALTH_TIMEOUT = 0.25


def components(layout: Layout, *, storage: bool = True) -> list[WorkerRef]:
    """Every transaction component of ``layout`` (with the storage replicas if ``storage``)."""
    refs = [layout.sequencer, *(r.worker for r in layout.resolvers), *layout.proxies]
    refs += layout.logs
    if storage:
        refs += [r for team in layout.storage for r in team.replicas]
    return refs


async def dead(
    ctx: RecoveryContext,
    refs: list[WorkerRef],
    timeout: float | Sequence[float] | None = None,  # noqa: ASYNC109
) -> list[tuple[WorkerRef, str]]:
    """The components that do not answer ``Health`` with ``Done`` within ``timeout``
    (default: the call timeout; or one per component), with why."""
    timeout = ctx.parameters.call_timeout if timeout is None else timeout
    answers = await call_all(ctx, [(r, Health(r.id)) for r in refs], timeout)
    return [(r, str(a)) for r, a in zip(refs, answers, strict=True) if not isinstance(a, Done)]


async def run(attempt: Attempt, ctx: RecoveryContext) -> None:
    layout = attempt.layout
    assert layout is not None, "build_layout composes the layout first"
    missing = await dead(ctx, components(layout), min(ctx.parameters.call_timeout, HEALTH_TIMEOUT))
    # Silent, not dead (a dead node's connections reset): the rollback leaves it.
    attempt.silent.update(r.node for r, why in missing if why == TIMED_OUT)
    if missing:
        raise Stall(
            "components not running: " + "; ".join(f"{r.kind} {r.id}: {why}" for r, why in missing)
        )
