"""The storage replica's durable base: the standard library's SQLite.

One database file (``data.sqlite3``, private to its owner) holds the replica's
key-value pairs as of its *durable version*, and a ``meta`` table with that
version: every flush of committed versions is one transaction that writes the
pairs and moves the version, so data and version can never disagree. WAL
journal mode (readers never wait for the writer), ``synchronous=FULL`` (a
commit is on disk when it returns; ``OFF`` when the node runs without fsync),
and the WAL file cut back to :data:`JOURNAL_LIMIT` after each checkpoint.

Why SQLite: it ships with Python (no new dependency), a flush is one
transaction and one fsync whatever it holds, point and range reads are B-tree
lookups in key order, and its crash safety is tested far beyond what a
reference data plane could build on its own files. A restart opens the file
and reads one row: the replica then replays only what the logs hold above it.

Every method blocks: the storage worker calls them on its executors, writes on
one thread and reads (and snapshots) on another, each with its own connection.
"""

from __future__ import annotations

import itertools
import operator
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..protocol import CommitBatch, KeyRange, MutationKind

FILE_NAME = "data.sqlite3"
_kind = operator.attrgetter("kind")
#: The WAL file is truncated to this size after a checkpoint.
JOURNAL_LIMIT = 4 << 20

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID",
)
#: ``fill`` values: not filled from another replica, being filled, filled.
FILL_NONE = ""
FILL_RUNNING = "filling"
FILL_DONE = "filled"


class Engine:
    """The durable base of one replica (see the module docstring)."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.path = directory / FILE_NAME
        if not self.path.exists():
            # Created private before SQLite opens it (its -wal and -shm files
            # take the same permissions).
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._fsync = fsync
        self._writer = self._connect()
        for statement in _SCHEMA:
            self._writer.execute(statement)
        self._reader = self._connect()

    def _connect(self) -> sqlite3.Connection:
        # Each connection is used by one executor thread at a time, never two.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'OFF'}")
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT}")
        return conn

    def close(self) -> None:
        self._reader.close()
        self._writer.close()

    # -- meta ------------------------------------------------------------------------

    @staticmethod
    def _meta(conn: sqlite3.Connection, name: str, default: object) -> object:
        row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return default if row is None else row[0]

    def durable(self) -> int:
        """Every version up to this one is in the base (0: nothing yet)."""
        value = self._meta(self._writer, "durable", 0)
        assert isinstance(value, int)
        return value

    def fill(self) -> str:
        """How the base was filled from another replica (``FILL_*``)."""
        value = self._meta(self._writer, "fill", FILL_NONE)
        assert isinstance(value, str)
        return value

    # -- writes (the write thread) ----------------------------------------------------

    def write(self, batches: Sequence[CommitBatch], durable: int) -> None:
        """Apply ``batches`` (in order) and move the durable version, in one transaction."""
        c = self._writer
        c.execute("BEGIN IMMEDIATE")
        try:
            # Each run of mutations of one kind is one executemany, in order:
            # fewer calls from Python on the write thread, which holds the GIL
            # (that the event loop waits for) while it makes them.
            for kind, run in itertools.groupby(
                (m for batch in batches for m in batch.mutations), key=_kind
            ):
                if kind == MutationKind.SET:
                    c.executemany(
                        "INSERT OR REPLACE INTO kv VALUES (?, ?)", ((m.key, m.param) for m in run)
                    )
                elif kind == MutationKind.CLEAR:
                    c.executemany("DELETE FROM kv WHERE key = ?", ((m.key,) for m in run))
                elif kind == MutationKind.CLEAR_RANGE:
                    c.executemany(
                        "DELETE FROM kv WHERE key >= ? AND key < ?", ((m.key, m.param) for m in run)
                    )
            c.execute("INSERT OR REPLACE INTO meta VALUES ('durable', ?)", (durable,))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def begin_fill(self) -> None:
        """Empty the base and mark it as being filled (a crash halfway is seen on open)."""
        c = self._writer
        c.execute("BEGIN IMMEDIATE")
        c.execute("DELETE FROM kv")
        c.execute("INSERT OR REPLACE INTO meta VALUES ('durable', 0), ('fill', ?)", (FILL_RUNNING,))
        c.execute("COMMIT")

    def put(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """Add pairs of a fill, in one transaction."""
        c = self._writer
        c.execute("BEGIN IMMEDIATE")
        c.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", pairs)
        c.execute("COMMIT")

    def end_fill(self, version: int) -> None:
        """The fill is complete: the base is the source's data at ``version``."""
        c = self._writer
        c.execute("BEGIN IMMEDIATE")
        c.execute(
            "INSERT OR REPLACE INTO meta VALUES ('durable', ?), ('fill', ?)", (version, FILL_DONE)
        )
        c.execute("COMMIT")

    # -- reads (the read thread) ------------------------------------------------------

    def get(self, key: bytes) -> tuple[bytes | None, int]:
        """The value of ``key`` in the base, and the base's version, read together."""
        c = self._reader
        c.execute("BEGIN")
        try:
            durable = self._meta(c, "durable", 0)
            row = c.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        finally:
            c.execute("COMMIT")
        assert isinstance(durable, int)
        return (None if row is None else row[0]), durable

    def scan(
        self, segments: Sequence[KeyRange], skip: set[bytes], limit: int
    ) -> tuple[list[tuple[bytes, bytes]], int]:
        """Up to ``limit`` pairs of the base in ``segments`` (sorted, disjoint), in
        key order, leaving out the keys in ``skip``; and the base's version."""
        c = self._reader
        out: list[tuple[bytes, bytes]] = []
        c.execute("BEGIN")
        try:
            durable = self._meta(c, "durable", 0)
            for segment in segments:
                rows = c.execute(
                    "SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                    (segment.begin, segment.end),
                )
                for key, value in rows:
                    if key in skip:
                        continue
                    out.append((key, value))
                    if len(out) >= limit:
                        break
                if len(out) >= limit:
                    break
        finally:
            c.execute("COMMIT")
        assert isinstance(durable, int)
        return out, durable

    def snapshot(self) -> Snapshot:
        """A consistent view of the base as it is now, until closed."""
        return Snapshot(self._connect())


class Snapshot:
    """One read transaction held open: the base at :attr:`version`, read in chunks."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        conn.execute("BEGIN")
        version = Engine._meta(conn, "durable", 0)
        assert isinstance(version, int)
        self.version = version

    def chunk(
        self, begin: bytes, end: bytes, *, inclusive: bool, max_bytes: int
    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Pairs from ``begin`` (included or not) to ``end``: at least one, then
        while they fit in ``max_bytes``; and whether the range is exhausted."""
        op = ">=" if inclusive else ">"
        rows = self._conn.execute(
            f"SELECT key, value FROM kv WHERE key {op} ? AND key < ? ORDER BY key",
            (begin, end),
        )
        out: list[tuple[bytes, bytes]] = []
        size = 0
        for key, value in rows:
            if out and size + len(key) + len(value) > max_bytes:
                return out, False
            out.append((key, value))
            size += len(key) + len(value)
        return out, True

    def close(self) -> None:
        try:
            self._conn.execute("COMMIT")
        finally:
            self._conn.close()
