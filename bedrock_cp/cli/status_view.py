"""``bedrock-cp status`` for people: the cluster at a glance, as rich tables.

One header line (leader, term, epoch, services), a table of the nodes, the
Director's state and a table of its last recoveries with each phase's
duration. Rendered with ``rich`` (plain text when stdout is not a terminal).
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

#: Recoveries shown (the Director keeps the last ten).
RECOVERIES_SHOWN = 5


def status_view(st: dict[str, Any]) -> Group:
    """The renderable of one ``Client.status()`` result."""
    leader = (
        f"leader: node {st['leader']} ({st['leader_state']})" if st["leader"] else "leader: none"
    )
    header = Text(
        f"{leader}   term: {st['term']}   epoch: {st['epoch']}   services: {st['services']}",
        style="bold" if st["leader"] else "bold red",
    )
    nodes = Table(title="nodes", title_justify="left", expand=False)
    for column in ("id", "address", "role", "term", "commit", "applied", "epoch", "pid"):
        nodes.add_column(column, justify="right" if column != "address" else "left")
    for n in st["nodes"]:
        if n["reachable"]:
            nodes.add_row(
                str(n["id"]),
                n["address"],
                n["role"],
                str(n["term"]),
                str(n["commit_index"]),
                str(n["applied_index"]),
                str(n["epoch"]),
                str(n["pid"]),
            )
        else:
            nodes.add_row(
                str(n["id"] or "?"),
                n["address"],
                Text(f"unreachable: {n.get('error', '')}", style="red"),
                *([""] * 5),
            )
    rec = st["recovery"]
    state = f"recovery: {rec['state']}"
    if rec.get("epoch"):
        state += f" (epoch {rec['epoch']}, attempt {rec.get('attempt')}"
        if rec["state"] != "running" and rec.get("phase"):
            state += f", phase {rec['phase']}"
        state += ")"
    if rec.get("last_duration_ms") is not None:
        state += f"; last recovery {rec['last_duration_ms']} ms"
    if rec.get("reason") and rec["state"] != "running":
        state += f"; {rec['reason']}"
    parts: list[Any] = [header, nodes, Text(state)]
    timeline = (rec.get("timeline") or [])[-RECOVERIES_SHOWN:]
    if timeline:
        recoveries = Table(title="last recoveries (ms)", title_justify="left")
        recoveries.add_column("epoch", justify="right")
        recoveries.add_column("attempt", justify="right")
        recoveries.add_column("outcome")
        recoveries.add_column("total", justify="right")
        recoveries.add_column("phases")
        for r in reversed(timeline):
            phases = ", ".join(f"{p['phase']} {p['duration_ms']:g}" for p in r.get("phases", []))
            recoveries.add_row(
                str(r["epoch"]),
                str(r["attempt"]),
                r["outcome"] or "in progress",
                f"{r['duration_ms']:g}",
                phases,
            )
        parts.append(recoveries)
    return Group(*parts)


def status_text(st: dict[str, Any], width: int = 160) -> str:
    """The view as plain text (what a pipe or a log gets)."""
    out = io.StringIO()
    Console(file=out, width=width, no_color=True, highlight=False).print(status_view(st))
    return out.getvalue().rstrip("\n")
