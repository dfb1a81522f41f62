"""What a node's commit proxies count: transactions answered, by outcome, and
how long each took from its arrival at a proxy to its answer."""

from __future__ import annotations

from ..metrics import Counter, Histogram
from ..protocol import Committed, Failed, NotCommitted, Response


def outcome(answer: Response) -> str:
    """``committed``, a NotCommitted reason (``conflict``, ``too_old``), or a Failed code."""
    if isinstance(answer, Committed):
        return "committed"
    if isinstance(answer, NotCommitted):
        return answer.reason
    if isinstance(answer, Failed):
        return answer.code
    return type(answer).__name__


class TransactionMetrics:
    """Shared by every commit proxy of one node (proxies come and go with epochs)."""

    def __init__(self) -> None:
        self.answers = Counter(
            "bedrock_transactions", "Commits answered by this node's proxies", ["outcome"]
        )
        self.latency = Histogram(
            "bedrock_transaction_commit_seconds",
            "From a commit's arrival at a proxy to its answer (batching, resolving, logging)",
            ["outcome"],
        )

    def observe(self, answer: Response, seconds: float) -> None:
        kind = outcome(answer)
        self.answers.inc(1.0, kind)
        self.latency.observe(seconds, kind)
