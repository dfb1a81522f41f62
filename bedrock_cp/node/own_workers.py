"""Requests from one worker to another on the same node, answered by a call.

The leader's node runs the sequencer, the commit proxies and the resolver
beside one of the logs. On every commit the proxy asks the sequencer for a
commit version, the resolver for conflicts and the sequencer again to record
the commit; on every read version the sequencer asks each log to confirm the
epoch. Served through :class:`~.local_channel.LocalFirstChannel` each such
call was encoded, handed to a task of its own under a deadline timer,
decoded, authorized and answered back through a future: two turns of the
event loop and a few dozen Python calls for an answer the worker computes
without waiting (a counter, a comparison, a conflict check).

:class:`OwnWorkersDialer` answers such a request by calling the worker's
``answer_now`` (see :class:`AnswersAtOnce`): the worker answers from memory,
in one step that nothing can cancel halfway, or says it must wait (a read
version waiting for its confirmation round, a batch whose predecessor has
not reached the resolver yet) and the request goes the usual way. Only a
request this node may send to itself is answered (the sender its type
declares, as :class:`~.authorize.Authority` checks it; never a Director
request, whose epoch check may wait); the node's stopping and an unknown
worker go the usual way too, which answers them as it always does.

Nothing is copied: request and answer are frozen structs, and neither the
caller nor the worker changes the lists in them after the call (the proxy
builds each request's lists for that request alone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from ..dataplane.worker import Dialer
from ..protocol import Failed, Request, Response, WorkerRef

log = logging.getLogger(__name__)


class AnswersAtOnce(Protocol):
    """A worker that can answer some requests without waiting."""

    def answer_now(self, body: Request) -> Response | None:
        """The answer to ``body``, computed without waiting; None if it must wait
        or is not one of those (then ``handle`` answers it). Whatever it changes,
        it changes in this one call: nobody sees half of it."""


#: The answer this node's worker gives ``body`` at once, or None (the usual way).
AnswerNow = Callable[[Request], Response | None]


class OwnWorkersDialer:
    """A :class:`~bedrock_cp.dataplane.worker.Dialer` that answers requests to
    this node's own workers that need no waiting, and sends the rest through
    ``dialer``."""

    def __init__(self, dialer: Dialer, own_address: str, answer_now: AnswerNow) -> None:
        self.dialer = dialer
        self.own_address = own_address
        self._answer_now = answer_now
        #: Requests answered by a call so far (tests and profiles look).
        self.answered_now = 0

    async def call(
        self,
        ref: WorkerRef,
        body: Request,
        timeout: float,  # noqa: ASYNC109 - the usual way's deadline
    ) -> Response:
        if ref.address == self.own_address:
            try:
                answer = self._answer_now(body)
            except Exception as exc:  # a bug: answer as the node would, never raise
                log.exception("worker %s failed on %s", ref.id, type(body).__name__)
                return Failed("internal", f"worker {ref.id!r}: {exc!r}")
            if answer is not None:
                self.answered_now += 1
                return answer
        return await self.dialer.call(ref, body, timeout)


__all__ = ["AnswerNow", "AnswersAtOnce", "OwnWorkersDialer"]
