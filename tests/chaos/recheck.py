"""Check a kept history again: ``python -m tests.chaos.recheck DIR``.

``DIR`` is what a failing chaos run kept (its ``history.jsonl`` and
``run.json``); every checker runs on it and prints its verdict, so a checker
can be improved and tried on a recorded failure without running the cluster.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..checking import (
    NodeSample,
    StateSample,
    check_bank,
    check_directory,
    check_list_append,
    check_samples,
    load,
)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    directory = Path(argv[0])
    ops = load(directory / "history.jsonl")
    run = json.loads((directory / "run.json").read_text())
    samples: list[NodeSample | StateSample] = [
        NodeSample(**json.loads(line))
        for line in (directory / "samples.jsonl").read_text().splitlines()
    ]
    states = directory / "states.jsonl"
    if states.exists():
        samples += [StateSample(**json.loads(line)) for line in states.read_text().splitlines()]
    results = [
        check_directory(ops),
        check_list_append(ops),
        check_bank(ops, accounts=run["accounts"], total=run["total"]),
        check_samples(samples, rss_budget=run["rss_budget"]),
    ]
    for r in results:
        print(r)
    return 0 if all(r.valid for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
