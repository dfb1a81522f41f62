"""The ``bedrock-cp`` command line (also ``python -m bedrock_cp``).

Expected failures (bad arguments, a failed check) end with one line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__


class CliError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bedrock-cp", description=__doc__)
    p.add_argument("--version", action="version", version=f"bedrock-cp {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run an in-process cluster of the Raft core: elect, write, kill the leader, verify",
    )
    demo.add_argument("--nodes", type=int, default=3, help="group size (default 3)")
    demo.add_argument(
        "--writes", type=int, default=300, help="writes before and after the failover"
    )
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    demo.add_argument(
        "--no-fsync", action="store_true", help="skip fdatasync (faster, not durable)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(
                nodes=args.nodes, writes=args.writes, as_json=args.json, sync=not args.no_fsync
            )
        raise CliError(f"unknown command {args.command!r}")
    except CliError as exc:
        print(f"bedrock-cp: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bedrock-cp: interrupted", file=sys.stderr)
        return 130


__all__ = ["CliError", "main"]
