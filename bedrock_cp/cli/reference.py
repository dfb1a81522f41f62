"""The configuration and CLI references, generated from the code itself.

``docs/configuration.md`` comes from the config types (:class:`NodeConfig`,
:class:`Timers`, :class:`AuthConfig`, :class:`ClusterConfig`: each field's
name, type, default and its ``#:`` comment) and ``docs/cli.md`` from the
argument parser, so neither can drift from what the code accepts:
``python -m bedrock_cp.cli.reference DOCS_DIR`` (``make docs``) writes both,
and a test fails when the files differ from what it would write.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any, Literal

import msgspec

from ..auth import AuthConfig
from ..coordinator.config import INT_BOUNDS, ClusterConfig
from ..node.config import NodeConfig, Timers


def field_comments(cls: type) -> dict[str, str]:
    """Each field's ``#:`` comment (the lines right above it), by field name."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text: list[str] = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#:"):
                text.insert(0, lines[row].strip()[2:].strip())
                row -= 1
            # Markdown, not reStructuredText: ``x`` -> `x`.
            comments[node.target.id] = " ".join(text).replace("``", "`")
    return comments


def _type_name(t: Any) -> str:
    if getattr(t, "__origin__", None) is Literal:
        return " or ".join(f'"{a}"' for a in t.__args__)
    name = getattr(t, "__name__", None)
    if getattr(t, "__origin__", None) is not None or name is None:
        return str(t).replace("typing.", "")
    return str(name)


def _default(value: object) -> str:
    if isinstance(value, msgspec.Struct):
        return "(table)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if value is msgspec.NODEFAULT:
        return "(required)"
    return str(value)


def _table(cls: type[msgspec.Struct], prefix: str = "") -> list[str]:
    comments = field_comments(cls)
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    hints = {f.name: f for f in info.fields}
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    annotations = inspect.get_annotations(cls, eval_str=True)
    for name in cls.__struct_fields__:
        f = hints[name]
        if f.default is not msgspec.NODEFAULT:
            default = _default(f.default)
        elif f.default_factory is not msgspec.NODEFAULT:
            default = _default(f.default_factory())
        else:
            default = "(required)"
        bounds = INT_BOUNDS.get(name) if cls is ClusterConfig else None
        meaning = comments.get(name, "")
        if bounds is not None:
            meaning += f" ({bounds[0]}..{bounds[1]})"
        type_name = _type_name(annotations[name]).replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {type_name} | {default} | {meaning} |")
    return rows


def configuration_reference() -> str:
    """``docs/configuration.md``."""
    out = [
        "# Configuration reference",
        "",
        "Generated from the config types by `make docs`; do not edit by hand.",
        "",
        "## Node file (`bedrock-cp node --config FILE`)",
        "",
        "A TOML file per node. An unknown key, or a value of the wrong type or out",
        "of range, stops the node with an error naming the key. Times are in",
        "milliseconds unless the name says otherwise; relative paths in `[auth]` are",
        "taken from the file's folder.",
        "",
        *_table(NodeConfig),
        "",
        "### `[timers]`",
        "",
        "Each node reads its own when it starts (they are not replicated).",
        "",
        *_table(Timers, "timers."),
        "",
        "### `[auth]`",
        "",
        "The same table appears in a client's `cluster.toml`. It names files and",
        "never holds a secret. A node whose mode needs files that are missing or",
        "readable by others refuses to start.",
        "",
        *_table(AuthConfig, "auth."),
        "",
        "## Cluster parameters (`bedrock-cp configure`)",
        "",
        "Held by the coordinators and changed through consensus, all of a change",
        "or none: `bedrock-cp configure --cluster C key=value ...`, or",
        "`Client.update_config({...})` from Python. Lists are comma-separated on",
        "the command line (`excluded_nodes=` clears one). A change of sizes takes",
        "effect with a new epoch, which the running Director starts at once;",
        "excluded nodes are drained (see `bedrock-cp exclude`).",
        "",
        *_table(ClusterConfig),
        "",
    ]
    return "\n".join(out)


def _walk(parser: argparse.ArgumentParser, words: list[str], summary: str, out: list[str]) -> None:
    """One section per command (the usage line, then a table of its arguments),
    then its subcommands'."""
    if words:
        out += [f"## `bedrock-cp {' '.join(words)}`", ""]
        if summary:
            out += [summary[0].upper() + summary[1:] + ".", ""]
    usage = " ".join(parser.format_usage().replace("usage: ", "").split())
    out += ["```", usage, "```", ""]
    rows = []
    subs = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            subs.append(action)
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        names = ", ".join(action.option_strings) or str(action.metavar or action.dest)
        text = (action.help or "").replace("|", "\\|")
        if action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text:
            text += f" (default {action.default})"
        rows.append(f"| `{names}` | {text} |")
    if rows:
        out += ["| argument | meaning |", "| --- | --- |", *rows, ""]
    for sub in subs:
        helps = {c.dest: c.help or "" for c in sub._choices_actions}
        for name, child in sub.choices.items():
            _walk(child, [*words, name], helps.get(name, ""), out)


def cli_reference() -> str:
    """``docs/cli.md``."""
    from . import _parser

    parser = _parser()
    out = [
        "# CLI reference",
        "",
        "Generated from the argument parser by `make docs`; do not edit by hand.",
        "Every command that talks to a cluster takes `--cluster` (a `cluster.toml`,",
        "its folder, or `host:port,host:port`), prints one JSON object with `--json`,",
        "and ends an expected failure with one line on stderr and exit status 1.",
        "",
    ]
    _walk(parser, [], "", out)
    return "\n".join(out).rstrip() + "\n"


def write(directory: Path) -> list[Path]:
    written = []
    for name, text in (
        ("configuration.md", configuration_reference()),
        ("cli.md", cli_reference()),
    ):
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")):
        print(p)
