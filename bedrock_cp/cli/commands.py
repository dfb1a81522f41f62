"""The CLI commands other than the demo: node, cluster up/down, and client calls."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from .._native import native
from ..auth.certs import CredentialFiles
from ..auth.certs import init as init_credentials
from ..client import Client, ClientError, ClusterFile, Transaction, connect, read_cluster_file
from ..client.cluster_file import resolve_cluster
from ..cluster.local import LocalCluster, stop_pids
from ..node import Node, NodeConfig, load_config
from ..node.config import config_from_dict
from . import CliError
from .logs import setup_logging


def run(args: argparse.Namespace) -> int:
    match args.command:
        case "node":
            return run_node(_node_config(args))
        case "certs":
            return _certs_init(args)
        case "cluster":
            return _cluster_up(args) if args.cluster_command == "up" else _cluster_down(args)
        case "status":
            return _client_command(args, _status)
        case "services":
            return _client_command(args, _services)
        case "register":
            return _client_command(args, _register)
        case "deregister":
            return _client_command(args, _deregister)
        case "coordinators":
            return _client_command(args, _coordinators)
        case "configure":
            return _client_command(args, _configure)
        case "exclude" | "include":
            return _client_command(args, _exclude)
        case "kv":
            return _kv_command(args)
    raise CliError(f"unknown command {args.command!r}")


# -- node ---------------------------------------------------------------------------------


def _node_config(args: argparse.Namespace) -> NodeConfig:
    if args.config:
        if args.id or args.data_dir or args.listen or args.advertise or args.peer:
            raise CliError(
                "give either --config or the --id/--data-dir/--listen/--advertise/--peer flags"
            )
        return load_config(args.config)
    missing = [f for f in ("id", "data_dir", "listen") if getattr(args, f) is None]
    if missing:
        raise CliError(
            "node needs --config, or --id, --data-dir and --listen: missing --"
            + ", --".join(m.replace("_", "-") for m in missing)
        )
    coordinators = {str(args.id): args.advertise or args.listen}
    for peer in args.peer:
        key, sep, address = peer.partition("=")
        if not sep:
            raise CliError(f"--peer {peer!r} is not ID=HOST:PORT")
        coordinators[key] = address
    auth: dict[str, str] = {"mode": args.auth}
    if args.credentials:
        files = CredentialFiles(Path(args.credentials).resolve(), args.cluster_name)
        chosen = files.node_tls(args.id) if args.auth == "tls" else files.node_secret()
        auth = {k: v for k, v in msgspec.structs.asdict(chosen).items() if v}
    return config_from_dict(
        {
            "id": args.id,
            "data_dir": args.data_dir,
            "listen": args.listen,
            "advertise": args.advertise or "",
            "coordinators": coordinators,
            "cluster": args.cluster_name,
            "join": args.join,
            "auth": auth,
        },
        source="flags",
    )


def run_node(config: NodeConfig) -> int:
    """Run one node until SIGTERM/SIGINT; exit 0 after a clean stop.

    Every file the node creates (WAL, state, manifests) is private to its user:
    the process umask is 0o077.
    """
    os.umask(0o077)
    setup_logging(config.log_level, config.id)
    import uvloop

    return uvloop.run(_serve(config))


async def _serve(config: NodeConfig) -> int:
    try:
        node = await Node.start(config)
    except native.WalError as exc:
        print(f"bedrock-cp: node {config.id} cannot start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"bedrock-cp: node {config.id} cannot listen on {config.listen}: {exc}", file=sys.stderr
        )
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(node.stop()))
    await node.wait_stopped()
    if node.fatal is not None:
        print(
            f"bedrock-cp: node {config.id} stopped on a fatal error: {node.fatal}", file=sys.stderr
        )
        return 2
    return 0


# -- cluster up / down ------------------------------------------------------------------------


def _cluster_up(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= 9:
        raise CliError(f"--nodes must be between 1 and 9, not {args.nodes}")
    directory = Path(args.dir)
    if (directory / "cluster.toml").exists():
        cf = read_cluster_file(directory / "cluster.toml")
        if stop_pids_alive(n.pid for n in cf.nodes):
            raise CliError(f"{directory} already holds a running cluster: cluster down first")
    cluster = LocalCluster(
        args.nodes, directory=directory, base_port=args.base_port, cluster=args.name, auth=args.auth
    )
    cluster.start()

    async def wait() -> int:
        return await cluster.wait_ready(args.timeout)

    try:
        leader = asyncio.run(wait())
    except (TimeoutError, RuntimeError) as exc:
        cluster.stop()
        raise CliError(f"cluster did not become ready: {str(exc).splitlines()[0]}") from None
    print(f"cluster {args.name!r}: {args.nodes} nodes up, leader node {leader}")
    print(f"  cluster file: {cluster.cluster_file}")
    if args.auth != "none":
        print(f"  credentials ({args.auth}): {cluster.credentials.directory}")
    else:
        print("  WARNING: authentication is off: anyone who can reach the nodes can change them")
    for node_id, address in sorted(cluster.addresses.items()):
        print(
            f"  node {node_id}: {address} pid {cluster.procs[node_id].pid} "
            f"config {cluster.config_path(node_id)} log {cluster.log_path(node_id)}"
        )
    return 0


def _certs_init(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= 99:
        raise CliError(f"--nodes must be between 1 and 99, not {args.nodes}")
    files = init_credentials(Path(args.dir), args.cluster_name, list(range(1, args.nodes + 1)))
    d = files.directory
    print(f"credentials of cluster {args.cluster_name!r} in {d} (keys and secrets mode 0600):")
    print(f"  CA: {d / 'ca.pem'} (its key {d / 'ca.key'}: keep it off the nodes)")
    print(f"  nodes 1..{args.nodes}: node-<id>.pem, node-<id>.key")
    print("  clients: admin.pem/.key (admin), client.pem/.key (client)")
    print("  secret mode: secret (nodes), tokens.toml (nodes), admin.token, client.token")
    return 0


def stop_pids_alive(pids: Any) -> bool:
    from ..cluster.local import pid_is_node

    return any(pid_is_node(p) for p in pids if p)


def _cluster_down(args: argparse.Namespace) -> int:
    cf = read_cluster_file(Path(args.dir) / "cluster.toml")
    stopped = stop_pids([n.pid for n in cf.nodes])
    print(f"stopped {len(stopped)} node process(es) of {args.dir}")
    return 0


# -- client commands ----------------------------------------------------------------------------


def _cluster(args: argparse.Namespace) -> ClusterFile:
    """``--cluster``, with the ``[auth]`` of ``--credentials`` when given."""
    cf = resolve_cluster(args.cluster)
    if args.credentials:
        cf.auth = read_cluster_file(Path(args.credentials)).auth
    return cf


ClientFn = Callable[[Client, argparse.Namespace], Awaitable[dict[str, Any]]]


def _client_command(args: argparse.Namespace, fn: ClientFn) -> int:
    async def go() -> dict[str, Any]:
        client = await connect(
            _cluster(args), timeout=min(args.timeout, 5.0), request_timeout=args.timeout
        )
        try:
            return await fn(client, args)
        finally:
            await client.close()

    result = asyncio.run(go())
    if result.pop("_printed", False):
        return 0
    text = result.pop("_text", None)
    if args.json or text is None:
        print(json.dumps(result, default=_json_default))
    else:
        print(text)
    return 0


def _fields(obj: msgspec.Struct) -> dict[str, Any]:
    """A Struct as a JSON object (the wire encoding is array-like; people want names)."""
    return {f: getattr(obj, f) for f in obj.__struct_fields__}


def _json_default(obj: object) -> object:
    if isinstance(obj, msgspec.Struct):
        return _fields(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


async def _status(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    from .status_view import status_text, status_view

    st = await client.status(timeout=min(args.timeout, 2.0))
    if args.watch is None:
        st["_text"] = status_text(st)
        return st
    # --watch: redraw in place on a terminal, else one snapshot per refresh.
    from rich.console import Console
    from rich.live import Live

    console = Console(highlight=False)
    shown = 1
    if args.json:
        print(json.dumps(st, default=_json_default), flush=True)
    elif console.is_terminal:
        with Live(status_view(st), console=console, auto_refresh=False) as live:
            while args.count is None or shown < args.count:
                await asyncio.sleep(args.watch)
                st = await _status_or_error(client, args)
                live.update(status_view(st), refresh=True)
                shown += 1
        return {"_printed": True}
    else:
        print(status_text(st), flush=True)
    while args.count is None or shown < args.count:
        await asyncio.sleep(args.watch)
        st = await _status_or_error(client, args)
        if args.json:
            print(json.dumps(st, default=_json_default), flush=True)
        else:
            print("\n" + status_text(st), flush=True)
        shown += 1
    return {"_printed": True}


async def _status_or_error(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    """One refresh of --watch: a cluster that stops answering is shown, not fatal."""
    try:
        return await client.status(timeout=min(args.timeout, 2.0))
    except ClientError as exc:
        return {
            "leader": None,
            "leader_state": None,
            "term": "?",
            "epoch": "?",
            "services": "?",
            "recovery": {"state": f"unknown ({exc})"},
            "nodes": [],
        }


async def _services(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    services = await client.services(stale=args.stale)
    rows = [_fields(s) for s in services]
    text = (
        "\n".join(f"{s.id}\t{s.kind}\t{s.node}\t{s.address}" for s in services) or "(no services)"
    )
    return {"services": rows, "_text": text}


async def _register(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    index = await client.register(args.id, kind=args.kind, address=args.address, node=args.node)
    return {
        "registered": args.id,
        "index": index,
        "_text": f"registered {args.id} at index {index}",
    }


async def _deregister(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    index = await client.deregister(args.id)
    return {
        "deregistered": args.id,
        "index": index,
        "_text": f"deregistered {args.id} at index {index}",
    }


async def _coordinators(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    if args.coord_command == "add":
        index = await client.add_coordinator(args.id, args.address)
        return {"added": args.id, "index": index, "_text": f"node {args.id} is a coordinator"}
    index = await client.remove_coordinator(args.id)
    return {
        "removed": args.id,
        "index": index,
        "_text": f"node {args.id} is no longer a coordinator",
    }


# -- configuration --------------------------------------------------------------------------


def parse_setting(text: str) -> tuple[str, int | str | list[str]]:
    """``key=value`` as UpdateConfig takes it: lists comma-separated (empty: none),
    integers as integers; the coordinators validate names and bounds."""
    from ..coordinator.config import INT_BOUNDS, LIST_PARAMS

    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CliError(f"{text!r} is not key=value")
    if key in LIST_PARAMS:
        return key, [v.strip() for v in value.split(",") if v.strip()]
    if key in INT_BOUNDS:
        try:
            return key, int(value)
        except ValueError:
            raise CliError(f"{key} must be an integer, not {value!r}") from None
    return key, value  # unknown: the coordinators name it


async def _configure(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    if args.settings:
        changes = dict(parse_setting(s) for s in args.settings)
        index = await client.update_config(changes)
        config = await client.config()
        text = f"applied at index {index}\n" + _config_text(config)
        return {"index": index, "config": config, "_text": text}
    config = await client.config()
    return {"config": config, "_text": _config_text(config)}


def _config_text(config: dict[str, Any]) -> str:
    def show(v: object) -> str:
        return ",".join(v) if isinstance(v, list) else str(v)

    return "\n".join(f"{k} = {show(v)}" for k, v in sorted(config.items()))


async def _exclude(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    """Add (``exclude``) or remove (``include``) nodes from ``excluded_nodes``; an
    exclusion then waits until the current layout holds nothing on them."""
    config = await client.config()
    excluded = set(config["excluded_nodes"])  # type: ignore[arg-type]
    nodes = set(args.nodes)
    wanted = excluded | nodes if args.command == "exclude" else excluded - nodes
    index = await client.update_config({"excluded_nodes": sorted(wanted)})
    result: dict[str, Any] = {"index": index, "excluded_nodes": sorted(wanted)}
    if args.command == "include":
        return {**result, "_text": f"excluded nodes now: {', '.join(sorted(wanted)) or 'none'}"}
    if args.no_wait:
        return {**result, "_text": f"node {', '.join(sorted(nodes))} excluded (not waiting)"}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.drain_timeout
    left: list[str] = []
    while True:
        layout = await client.fetch_layout()
        if layout is not None:
            left = sorted(f"{r.kind} {r.id}" for r in layout.workers() if r.node in nodes)
            if not left:
                text = f"node {', '.join(sorted(nodes))} drained: epoch {layout.epoch} uses none"
                return {**result, "drained": True, "epoch": layout.epoch, "_text": text}
        if loop.time() >= deadline:
            raise CliError(
                f"node {', '.join(sorted(nodes))} excluded, but after {args.drain_timeout:g}s "
                f"the layout still has {', '.join(left) or 'no layout'} there"
            )
        await asyncio.sleep(0.2)


# -- kv ---------------------------------------------------------------------------------------


def _kv_command(args: argparse.Namespace) -> int:
    from ..client import open_database

    async def go() -> dict[str, Any]:
        db = await open_database(
            _cluster(args), timeout=min(args.timeout, 5.0), request_timeout=args.timeout
        )
        try:
            # Arguments that are not UTF-8 arrive as surrogates: keep their raw bytes.
            key = args.key.encode("utf-8", "surrogateescape")
            if args.kv_command == "get":
                async with db.transaction() as tr:
                    value = await tr.get(key)
                text = value.decode(errors="replace") if value is not None else "(not found)"
                return {
                    "key": args.key,
                    "value": value.decode(errors="replace") if value is not None else None,
                    "_text": text,
                }

            async def write(tr: Transaction) -> int | None:
                if args.kv_command == "put":
                    tr.set(key, args.value.encode("utf-8", "surrogateescape"))
                else:
                    tr.clear(key)
                return None

            async for tr in db.attempts(timeout=args.timeout):
                async with tr:
                    await write(tr)
            version = tr.committed_version
            verb = "put" if args.kv_command == "put" else "deleted"
            return {
                "key": args.key,
                "version": version,
                "_text": f"{verb} {args.key} at version {version}",
            }
        finally:
            await db.close()

    result = asyncio.run(go())
    text = result.pop("_text")
    print(json.dumps(result) if args.json else text)
    return 0
