"""The bank invariant: money moves between accounts, never appears or vanishes.

Ops: ``transfer`` ``(from, to, amount)`` (the workload moves money only when
``from`` holds enough, so no balance goes negative), and ``balances`` — a read
of every account in one transaction -> ``{account: balance}``. In a
serializable history every ``ok`` read sees a state between whole transfers,
so its balances sum to the constant total, every account is there, and none is
negative. A read that straddles a transfer (read skew, a read from two epochs
or two snapshots) breaks the sum.
"""

from __future__ import annotations

from collections.abc import Sequence

from .history import Op
from .result import Anomaly, CheckResult, result


def check_bank(
    history: Sequence[Op],
    *,
    accounts: Sequence[str],
    total: int,
    max_reported: int = 10,
) -> CheckResult:
    """Check every ok ``balances`` read against ``accounts`` and ``total``."""
    expected = set(accounts)
    anomalies: list[Anomaly] = []
    reads = [op for op in history if op.f == "balances" and op.ok]
    for op in reads:
        balances: dict[str, int] = op.value
        found: list[Anomaly] = []
        if set(balances) != expected:
            missing = sorted(expected - set(balances))
            extra = sorted(set(balances) - expected)
            found.append(
                Anomaly(
                    "wrong-accounts",
                    f"#{op.id} read accounts missing {missing} and extra {extra}",
                    (op,),
                )
            )
        if sum(balances.values()) != total:
            found.append(
                Anomaly(
                    "wrong-total",
                    f"#{op.id} read balances summing to {sum(balances.values())}, not {total}: "
                    f"{dict(sorted(balances.items()))}",
                    (op,),
                )
            )
        negative = {a: b for a, b in balances.items() if b < 0}
        if negative:
            found.append(
                Anomaly("negative-balance", f"#{op.id} read negative balances {negative}", (op,))
            )
        anomalies.extend(found)
    transfers = [op for op in history if op.f == "transfer"]
    return result(
        "bank",
        anomalies[:max_reported],
        reads=len(reads),
        transfers=len(transfers),
        transfers_ok=sum(op.ok for op in transfers),
        bad_reads=len({a.ops[0].id for a in anomalies}),
    )
