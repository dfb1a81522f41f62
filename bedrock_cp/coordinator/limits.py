"""Bounds on what the coordinators' state accepts, and the field checks that enforce them.

Every bound exists so that a hostile or buggy client cannot grow the replicated
state (and every coordinator's memory and snapshots) without limit (I9). The
checks return a reason string naming the problem, or ``None`` when the value is
fine; callers collect the first reason and reject the whole command with it.
"""

from __future__ import annotations

import re

MAX_NAME_LEN = 256
"""Longest id, kind, node name, capability or cluster name, in characters."""
MAX_ADDRESS_LEN = 256
"""Longest ``host:port`` address, in characters."""
MAX_SERVICES_PER_COMMAND = 10_000
"""Most services (or service ids) in one command."""
MAX_CAPABILITIES = 64
"""Most capabilities one node may declare."""
MAX_DIRECTORY = 1_000_000
"""Most services in the directory."""
MAX_SERVICES_PAGE = 2_000
"""Most services in one page of a listing: of the longest names and addresses
(4 x 256 characters, up to 4 bytes each) 8.4 MB, under the 16 MiB frame cap."""
MAX_NODES = 100_000
"""Most registered nodes."""
MAX_COORDINATORS = 9
"""Most coordinator addresses (groups are 1, 3 or 5; room for changes in flight)."""
MAX_LAYOUT_BYTES = 8 * 1024 * 1024
"""Largest stored layout (well under the 16 MiB frame cap)."""
MAX_RETIRING = 100_000
"""Most retired workers whose removal is pending (each a node's worker directory)."""
MAX_SESSIONS = 10_000
"""Client sessions kept (most recently active first; see :mod:`.sessions`)."""


#: Whitespace as ``str.isspace`` defines it (checked equal over every code point).
_WHITESPACE = re.compile(r"\s")


def name_ok(value: str) -> bool:
    """What :func:`check_name` accepts, without a reason to format."""
    return 0 < len(value) <= MAX_NAME_LEN


def check_name(what: str, value: str) -> str | None:
    """A non-empty name of at most :data:`MAX_NAME_LEN` characters."""
    if not value:
        return f"{what} must be non-empty"
    if len(value) > MAX_NAME_LEN:
        return f"{what} is {len(value)} characters long (at most {MAX_NAME_LEN})"
    return None


def check_address(what: str, value: str) -> str | None:
    """``host:port`` with a non-empty host and 1 <= port <= 65535 (IPv6 hosts in brackets)."""
    if len(value) > MAX_ADDRESS_LEN:
        return f"{what} is {len(value)} characters long (at most {MAX_ADDRESS_LEN})"
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        return f"{what} {value!r} is not host:port"
    if _WHITESPACE.search(host):
        return f"{what} {value!r} has whitespace in its host"
    if ":" in host and not (host.startswith("[") and host.endswith("]") and len(host) > 2):
        return f"{what} {value!r}: an IPv6 host must be in brackets"
    # isdigit alone accepts non-ASCII digits; int() would accept '+1' and ' 1'.
    if not (port.isascii() and port.isdigit()) or len(port) > 5:
        return f"{what} {value!r} has a bad port {port!r}"
    if not 1 <= int(port) <= 65535:
        return f"{what} {value!r} has port {int(port)} outside 1..65535"
    return None


def check_non_negative(what: str, value: int) -> str | None:
    """An integer >= 0."""
    if value < 0:
        return f"{what} must be >= 0, got {value}"
    return None
