"""The ``bedrock-cp`` command line (also ``python -m bedrock_cp``).

Expected failures (bad arguments or config, an unreachable cluster, no leader
in time, a refused request) end with one line on stderr and exit status 1,
never a traceback. ``--json`` output is one JSON object on stdout.
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
        help="local cluster: load, kill -9 the leader+Director node, show recovery, verify",
    )
    demo.add_argument("--nodes", type=int, default=3, help="node processes (default 3)")
    demo.add_argument("--seconds", type=float, default=4.0, help="load duration (default 4)")
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.add_argument(
        "--core", action="store_true", help="instead: the Raft core alone, in one process"
    )
    demo.add_argument("--writes", type=int, default=300, help="--core: writes per phase")
    demo.add_argument("--no-fsync", action="store_true", help="--core: skip fdatasync")

    node = sub.add_parser("node", help="run one node (coordinator if listed)")
    node.add_argument("--config", help="node TOML file")
    node.add_argument("--id", type=int, help="this node's id (without --config)")
    node.add_argument("--data-dir", help="where its data lives (without --config)")
    node.add_argument("--listen", help="host:port to accept connections on")
    node.add_argument("--advertise", help="host:port others reach this node at (default: --listen)")
    node.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="ID=HOST:PORT",
        help="another founding coordinator (repeat for each)",
    )
    node.add_argument("--cluster-name", default="bedrock", help="the cluster's name")
    node.add_argument("--join", action="store_true", help="join a running cluster")
    node.add_argument(
        "--auth",
        choices=("tls", "secret", "none"),
        default="tls",
        help="authentication (default tls; none: off, anyone can change the cluster)",
    )
    node.add_argument("--credentials", metavar="DIR", help="made by `certs init` (tls, secret)")

    certs = sub.add_parser("certs", help="credentials of a cluster")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    cinit = certs_sub.add_parser(
        "init", help="create a CA, node and client certificates, a cluster secret and tokens"
    )
    cinit.add_argument("dir", help="where to write them (created 0700)")
    cinit.add_argument("--cluster-name", default="bedrock", help="the cluster's name")
    cinit.add_argument("--nodes", type=int, default=3, help="node certificates 1..N (default 3)")

    cluster = sub.add_parser("cluster", help="local clusters of node processes")
    csub = cluster.add_subparsers(dest="cluster_command", required=True)
    up = csub.add_parser("up", help="start N local nodes in the background")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--dir", required=True, help="configs, data, logs and cluster.toml")
    up.add_argument(
        "--base-port", type=int, help="node i listens on BASE+i-1 (default: free ports)"
    )
    up.add_argument("--name", default="bedrock", help="cluster name (id)")
    up.add_argument("--timeout", type=float, default=30.0)
    up.add_argument(
        "--auth",
        choices=("tls", "secret", "none"),
        default="tls",
        help="authentication (default tls: credentials are generated into DIR/certs)",
    )
    down = csub.add_parser("down", help="stop the nodes of a local cluster")
    down.add_argument("--dir", required=True, help="the --dir of `cluster up`")

    def with_cluster(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--cluster", required=True, help="DIR/cluster.toml, DIR, or host:port,host:port"
        )
        sp.add_argument("--json", action="store_true", help="print one JSON object")
        sp.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
        sp.add_argument(
            "--credentials",
            metavar="TOML",
            help="a cluster.toml whose [auth] to use (with --cluster host:port,...)",
        )
        return sp

    status = with_cluster(
        sub.add_parser("status", help="leader, term, epoch, every node, the last recoveries")
    )
    status.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=1.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default 1) until interrupted",
    )
    status.add_argument("--count", type=int, help="with --watch: stop after this many views")
    svc = with_cluster(
        sub.add_parser(
            "services", help="the service directory, sorted by id (read 2,000 services at a time)"
        )
    )
    svc.add_argument(
        "--stale",
        action="store_true",
        help="any coordinator may answer, from what it applied (a follower trails the "
        "leader's writes by up to a Raft tick, 10 ms by default)",
    )
    reg = with_cluster(sub.add_parser("register", help="register a service (linearizable)"))
    reg.add_argument("--id", required=True, help="service id")
    reg.add_argument("--kind", required=True, help="service kind")
    reg.add_argument("--address", required=True, help="host:port it serves at")
    reg.add_argument("--node", default="", help="the node it lives on (default: none)")
    dereg = with_cluster(sub.add_parser("deregister", help="remove a service"))
    dereg.add_argument("--id", required=True, help="service id")
    coord = sub.add_parser("coordinators", help="add or remove a coordinator")
    coord_sub = coord.add_subparsers(dest="coord_command", required=True)
    add = with_cluster(coord_sub.add_parser("add", help="add a running node as a coordinator"))
    add.add_argument("--id", type=int, required=True, help="node id")
    add.add_argument("--address", required=True, help="its advertised host:port")
    rm = with_cluster(coord_sub.add_parser("remove", help="remove a coordinator"))
    rm.add_argument("--id", type=int, required=True, help="node id")
    conf = with_cluster(
        sub.add_parser(
            "configure", help="show the cluster's parameters, or change them (key=value ...)"
        )
    )
    conf.add_argument(
        "settings", nargs="*", metavar="KEY=VALUE", help="e.g. desired_logs=5 (all or none)"
    )
    exclude = with_cluster(
        sub.add_parser("exclude", help="drain nodes: their roles and data move away")
    )
    exclude.add_argument("nodes", nargs="+", metavar="NODE", help="node names (their ids)")
    exclude.add_argument("--no-wait", action="store_true", help="do not wait for the drain")
    exclude.add_argument(
        "--drain-timeout", type=float, default=120.0, help="seconds to wait (default 120)"
    )
    include = with_cluster(sub.add_parser("include", help="undo an exclusion"))
    include.add_argument("nodes", nargs="+", metavar="NODE", help="node names (their ids)")
    kv = sub.add_parser("kv", help="transactions on the data plane (UTF-8 keys and values)")
    kv_sub = kv.add_subparsers(dest="kv_command", required=True)
    get = with_cluster(kv_sub.add_parser("get", help="read a key"))
    get.add_argument("key", help="UTF-8 key")
    put = with_cluster(kv_sub.add_parser("put", help="write a key"))
    put.add_argument("key", help="UTF-8 key")
    put.add_argument("value", help="UTF-8 value")
    delete = with_cluster(kv_sub.add_parser("delete", help="clear a key"))
    delete.add_argument("key", help="UTF-8 key")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ..client import ClientError
    from ..node.config import ConfigError

    try:
        if args.command == "demo" and args.core:
            from .core_demo import run_core_demo

            return run_core_demo(
                nodes=args.nodes, writes=args.writes, as_json=args.json, sync=not args.no_fsync
            )
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(nodes=args.nodes, seconds=args.seconds, as_json=args.json)
        from . import commands

        return commands.run(args)
    except (CliError, ConfigError, ClientError) as exc:
        print(f"bedrock-cp: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bedrock-cp: interrupted", file=sys.stderr)
        return 130


__all__ = ["CliError", "main"]
