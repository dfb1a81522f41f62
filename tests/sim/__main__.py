"""Run simulations from the command line: ``python -m tests.sim``.

::

    python -m tests.sim --seed 12                 # one seed, its report and trace
    python -m tests.sim --fixed 200 --fresh 100   # seeds 1-200, then 100 from a random base
    python -m tests.sim --fresh 10000 --jobs 2    # a soak

Seeds run in ``--jobs`` worker processes; each prints one line, a failing one
its whole report. The base of the fresh seeds is printed first, so any run can
be replayed (``make sim SEED=N`` runs one seed). ``--json FILE`` writes every
seed's outcome for a test to read. Exit status 1 if any seed failed.

Runs are deterministic only under a fixed string hash (``PYTHONHASHSEED``:
iteration over sets of strings takes part in the order of events), so this
entry point re-executes itself with ``PYTHONHASHSEED=0`` when it is not set.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import sys
import time
from dataclasses import replace

from .run import SimConfig, SimReport, run_seed

#: The hash seed every simulation runs under.
HASH_SEED = "0"


def _one(config: SimConfig) -> tuple[int, bool, str, str, float]:
    started = time.monotonic()
    report: SimReport = run_seed(config)
    text = report.line() if report.valid else report.summary()
    return config.seed, report.valid, text, report.digest, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("PYTHONHASHSEED") != HASH_SEED:
        env = {**os.environ, "PYTHONHASHSEED": HASH_SEED}
        os.execve(sys.executable, [sys.executable, "-m", "tests.sim", *sys.argv[1:]], env)
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seed", type=int, action="append", default=[], help="run this seed")
    parser.add_argument("--fixed", type=int, default=0, help="run seeds 1..N")
    parser.add_argument("--fresh", type=int, default=0, help="run N seeds from a random base")
    parser.add_argument("--base", type=int, default=None, help="the base of the fresh seeds")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=SimConfig.seconds, help="of faults")
    parser.add_argument("--nodes", type=int, default=SimConfig.nodes)
    parser.add_argument("--json", default=None, help="write the outcomes here")
    parser.add_argument(
        "--verbose", action="store_true", help="one seed: the node logs and the whole trace"
    )
    args = parser.parse_args(argv)

    seeds = list(args.seed) + list(range(1, args.fixed + 1))
    base = None
    if args.fresh:
        base = args.base if args.base is not None else random.SystemRandom().randrange(2**40)
        print(f"fresh seeds: {args.fresh} from base {base} (--base {base} replays them)")
        seeds += [base + i for i in range(args.fresh)]
    if not seeds:
        parser.error("no seeds: give --seed, --fixed or --fresh")
    configs = [replace(SimConfig(seed=s), seconds=args.seconds, nodes=args.nodes) for s in seeds]
    started = time.monotonic()
    outcomes: list[dict[str, object]] = []
    failed: list[int] = []
    if len(configs) == 1:
        report = run_seed(configs[0], quiet=not args.verbose)
        print(report.summary(trace_lines=10**6 if args.verbose else 200))
        results = [(report.config.seed, report.valid, "", report.digest, 0.0)]
    elif args.jobs <= 1:
        results = map(_one, configs)
    else:
        pool = concurrent.futures.ProcessPoolExecutor(args.jobs)
        results = pool.map(_one, configs)
    for seed, ok, text, digest, seconds in results:
        outcomes.append({"seed": seed, "ok": ok, "digest": digest, "seconds": round(seconds, 3)})
        if text:
            print(text, flush=True)
        if not ok:
            failed.append(seed)
            print(f"replay: make sim SEED={seed}", flush=True)
    took = time.monotonic() - started
    print(
        f"{len(configs)} seeds in {took:.1f} s, {len(failed)} failed"
        + (f": {' '.join(map(str, failed))}" if failed else ""),
        flush=True,
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"seconds": round(took, 3), "base": base, "outcomes": outcomes}, out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
