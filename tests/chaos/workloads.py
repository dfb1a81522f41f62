"""Workloads: clients that use the real client API and record what they saw.

Each workload drives one kind of operation into a shared
:class:`~tests.checking.History`, from several concurrent client tasks, each
with its own connections (``process`` names the task):

- :class:`ListAppend` — transactions of 1-4 micro-ops over a few keys: reads,
  and appends of values unique to the run (each key holds its list, encoded as
  ``b"1,5,9"``). Some tasks run them as a user would, through
  ``db.attempts()`` (whose retries must never apply a transaction twice: each
  retry appends the same values, so a double apply shows as a duplicate);
  others make one raw attempt each (so an ambiguous commit stays ``info``);
  occasional readers read every key in use now and then.
- :class:`Bank` — transfers between a few accounts, and reads of all of them.
- :class:`Directory` — register/deregister/read of a few service ids, and
  readers each pinned to one coordinator (a client configured with one address).

Outcomes: a commit refused for a conflict or a newer epoch is ``fail`` (the
client contract calls those safe to retry: not applied); a commit that timed
out, lost its connection, or answered ``unavailable`` or
``commit_unknown_result`` is ``info``; an error before the commit was sent is
``fail`` (nothing was applied). Reads that fail record ``fail``: a read has no
effect. Every loop is bounded by a count and stops when ``stop`` is set; every
call by the client's own timeouts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bedrock_cp.client import (
    Client,
    ClientError,
    Database,
    RequestRejected,
    Transaction,
    TransactionError,
)

from ..checking import APPEND, READ, History, Pending

#: Commit errors after which the transaction may still have been applied.
AMBIGUOUS_CODES = frozenset({"unavailable", "commit_unknown_result", "internal"})

Micro = tuple[str, str, Any]


def maybe_applied(error: BaseException) -> bool:
    """Could a commit that ended in ``error`` have been applied?"""
    if isinstance(error, TransactionError):
        return error.code in AMBIGUOUS_CODES
    return True  # a timeout or a lost connection: nobody knows


@dataclass
class Attempted:
    """How one logical transaction went, over all its attempts."""

    value: Any = None
    committed: bool = False
    #: An attempt's commit ended so that it may have been applied.
    ambiguous: str = ""
    error: str = ""
    #: Why earlier attempts did not commit, in order.
    retried: list[str] = field(default_factory=list)
    #: The last attempt's read version, the epoch of its layout, its commit version.
    read_version: int = 0
    epoch: int = 0
    commit_version: int | None = None

    def note(self) -> str:
        """Where it read and committed, and the failed attempts before (those
        that reached the commit first: they matter most)."""
        where = f"read v{self.read_version} (epoch {self.epoch} layout)"
        if self.commit_version and self.commit_version != self.read_version:
            where += f", committed v{self.commit_version}"  # read-only: nothing to commit
        if not self.retried:
            return where
        at_commit = [r for r in self.retried if r.startswith("commit")]
        shown = "; ".join(dict.fromkeys(at_commit or self.retried[-1:]))
        return f"{where}; after {len(self.retried)} failed attempt(s): {shown}"


async def run_transaction(
    db: Database,
    body: Callable[[Transaction], Awaitable[Any]],
    *,
    retry: bool,
    timeout: float = 10.0,  # noqa: ASYNC109 - bounds all attempts together
) -> Attempted:
    """Run ``body`` and commit, once (``retry=False``) or through ``db.attempts()``."""
    out = Attempted()

    async def attempt(tr: Transaction) -> None:
        reached_commit = False
        try:
            async with tr:
                out.value = await body(tr)
                reached_commit = True
                # Where the reads came from, for the report (the snapshot is cached).
                out.read_version = await tr.read_version()
                out.epoch = db.layout.epoch if db.layout is not None else 0
        finally:
            if tr.error is not None:
                where = "commit" if reached_commit else "before commit"
                out.retried.append(f"{where}: {tr.error}")
                if reached_commit and maybe_applied(tr.error):
                    out.ambiguous = out.ambiguous or str(tr.error)
        out.committed = tr.committed_version is not None
        out.commit_version = tr.committed_version

    try:
        if retry:
            async for tr in db.attempts(max_attempts=50, timeout=timeout):
                await attempt(tr)
        else:
            await attempt(db.transaction())
    except TransactionError as err:
        out.error = str(err)
        if not retry and err.retryable:
            await _after_raw_failure(db, err)
    except (ClientError, OSError, TimeoutError) as err:
        # Raised outside the client's own error mapping: the commit may be in flight.
        out.error = f"{type(err).__name__}: {err}"
        out.ambiguous = out.ambiguous or out.error
    return out


async def _after_raw_failure(db: Database, err: TransactionError) -> None:
    """What a user of single attempts does before the next one: back off a
    little, and after a new epoch or an unreachable component fetch the newer
    layout (``db.attempts()`` does both itself)."""
    await asyncio.sleep(db.rng.uniform(0.005, 0.05))
    if err.code in ("epoch_changed", "unavailable"):
        epoch = db.layout.epoch if db.layout is not None else 0
        try:
            await db.refresh_layout(newer_than=epoch, timeout=1.0)
        except TransactionError:
            db.layout = None  # fetch whatever is current next time


def record(pending: Pending, outcome: Attempted, value: Any) -> None:
    if outcome.committed:
        pending.ok(value, outcome.note())
    elif outcome.ambiguous:
        pending.info(outcome.ambiguous)
    else:
        pending.fail(outcome.error or "not committed")


@dataclass
class Budget:
    """Bounds a client task: at most ``ops`` operations, until ``stop`` is set."""

    stop: asyncio.Event
    ops: int = 100_000
    done: int = field(default=0)

    def more(self) -> bool:
        if self.stop.is_set() or self.done >= self.ops:
            return False
        self.done += 1
        return True


# -- list-append -----------------------------------------------------------------------------


def encode_list(values: list[int]) -> bytes:
    return ",".join(map(str, values)).encode()


def decode_list(raw: bytes | None) -> list[int]:
    return [int(v) for v in raw.split(b",")] if raw else []


class ListAppend:
    """See the module docstring. ``keys`` keys are in use at a time; a key that
    took ``appends_per_key`` appends is retired for a fresh one (``k0``,
    ``k1``, ...), so reads stay short however long the run."""

    def __init__(
        self,
        history: History,
        rng: random.Random,
        *,
        keys: int = 5,
        appends_per_key: int = 200,
    ) -> None:
        self.history = history
        self.rng = rng
        self.appends_per_key = appends_per_key
        self.names = [f"k{i}" for i in range(keys)]
        self.active = list(self.names)
        self.prefix = b"chaos/la/"
        self._appends: dict[str, int] = {}
        self._next = 0

    def key(self, name: str) -> bytes:
        return self.prefix + name.encode()

    def next_value(self) -> int:
        """A value never appended before in this run."""
        self._next += 1
        return self._next

    def append_to(self) -> tuple[str, int]:
        """A key to append to (retiring a full one) and a fresh value."""
        i = self.rng.randrange(len(self.active))
        name = self.active[i]
        if self._appends.get(name, 0) >= self.appends_per_key:
            name = f"k{len(self.names)}"
            self.names.append(name)
            self.active[i] = name
        self._appends[name] = self._appends.get(name, 0) + 1
        return name, self.next_value()

    def generate(self) -> tuple[Micro, ...]:
        mops: list[Micro] = []
        for _ in range(self.rng.randint(1, 4)):
            if self.rng.random() < 0.5:
                mops.append((READ, self.rng.choice(self.active), None))
            else:
                mops.append((APPEND, *self.append_to()))
        return tuple(mops)

    def body(self, mops: tuple[Micro, ...]) -> Callable[[Transaction], Awaitable[Any]]:
        async def run(tr: Transaction) -> tuple[Micro, ...]:
            out: list[Micro] = []
            for f, name, v in mops:
                current = decode_list(await tr.get(self.key(name)))
                if f == READ:
                    out.append((READ, name, tuple(current)))
                else:
                    tr.set(self.key(name), encode_list([*current, v]))
                    out.append((APPEND, name, v))
            return tuple(out)

        return run

    async def one(self, db: Database, process: str, mops: tuple[Micro, ...], retry: bool) -> bool:
        """Run and record one transaction; True if it committed."""
        pending = self.history.invoke(process, "txn", mops)
        outcome = await run_transaction(db, self.body(mops), retry=retry)
        record(pending, outcome, outcome.value)
        return outcome.committed

    async def client(self, db: Database, process: str, budget: Budget, *, retry: bool) -> None:
        while budget.more():
            await self.one(db, process, self.generate(), retry)

    async def reader(
        self, db: Database, process: str, budget: Budget, *, retry: bool, every: float = 0.5
    ) -> None:
        """A read of every key in use, now and then: between reads this client
        learns nothing, so it may come back with the layout of an epoch that
        has since ended (its read versions must still miss no commit)."""
        while budget.more():
            await self.one(db, process, tuple((READ, n, None) for n in self.active), retry)
            await asyncio.sleep(every * self.rng.uniform(0.5, 1.5))

    async def final_read(self, db: Database) -> bool:
        """Read every key ever used, 50 to a transaction, retrying: the run's last word."""
        ok = True
        for i in range(0, len(self.names), 50):
            mops = tuple((READ, n, None) for n in self.names[i : i + 50])
            for _ in range(5):  # bounded: each try gives up after the attempts' timeout
                if await self.one(db, "final", mops, retry=True):
                    break
            else:
                ok = False
        return ok


# -- bank -------------------------------------------------------------------------------------


class Bank:
    """``accounts`` accounts holding ``total`` between them; see the module docstring."""

    def __init__(
        self, history: History, rng: random.Random, *, accounts: int = 5, total: int = 1000
    ) -> None:
        self.history = history
        self.rng = rng
        self.accounts = [f"a{i}" for i in range(accounts)]
        self.total = total
        self.prefix = b"chaos/bank/"

    def key(self, account: str) -> bytes:
        return self.prefix + account.encode()

    async def setup(self, db: Database) -> None:
        share, rest = divmod(self.total, len(self.accounts))

        async def fill(tr: Transaction) -> None:
            for i, account in enumerate(self.accounts):
                tr.set(self.key(account), str(share + (rest if i == 0 else 0)).encode())

        await db.run(fill, timeout=30)

    async def _balances(self, tr: Transaction) -> dict[str, int]:
        out = {}
        for account in self.accounts:
            raw = await tr.get(self.key(account))
            if raw is not None:
                out[account] = int(raw)
        return out

    async def read(self, db: Database, process: str, *, retry: bool) -> bool:
        """One read of every account; True if it succeeded."""
        pending = self.history.invoke(process, "balances", None)
        outcome = await run_transaction(db, self._balances, retry=retry)
        if outcome.committed:
            pending.ok(outcome.value, outcome.note())
            return True
        pending.fail(outcome.error or outcome.ambiguous or "not committed")
        return False

    async def final_read(self, db: Database) -> bool:
        for _ in range(5):  # bounded: each try gives up after the attempts' timeout
            if await self.read(db, "final", retry=True):
                return True
        return False

    async def transfer(self, db: Database, process: str, *, retry: bool) -> None:
        src, dst = self.rng.sample(self.accounts, 2)
        amount = self.rng.randint(1, 20)

        async def move(tr: Transaction) -> bool:
            a = int(await tr.get(self.key(src)) or b"0")
            b = int(await tr.get(self.key(dst)) or b"0")
            if a < amount:
                return False
            tr.set(self.key(src), str(a - amount).encode())
            tr.set(self.key(dst), str(b + amount).encode())
            return True

        pending = self.history.invoke(process, "transfer", (src, dst, amount))
        outcome = await run_transaction(db, move, retry=retry)
        record(pending, outcome, outcome.value)

    async def client(self, db: Database, process: str, budget: Budget, *, retry: bool) -> None:
        while budget.more():
            if self.rng.random() < 0.3:
                await self.read(db, process, retry=retry)
            else:
                await self.transfer(db, process, retry=retry)


# -- directory --------------------------------------------------------------------------------


class Directory:
    """Register/deregister/read of ``services`` ids; each write's address is unique."""

    def __init__(self, history: History, rng: random.Random, *, services: int = 4) -> None:
        self.history = history
        self.rng = rng
        self.ids = tuple(f"chaos-{i}" for i in range(services))
        self._port = 0

    def _address(self) -> str | None:
        if self._port >= 65535:
            return None  # every unique address used: the workload is done
        self._port += 1
        return f"127.0.0.1:{self._port}"

    async def write(self, client: Client, process: str, service_id: str, register: bool) -> bool:
        if register:
            address = self._address()
            if address is None:
                return False
            pending = self.history.invoke(process, "register", (service_id, address))
            call: Awaitable[int] = client.register(
                service_id, kind="chaos", address=address, node="chaos"
            )
        else:
            pending = self.history.invoke(process, "deregister", (service_id,))
            call = client.deregister(service_id)
        try:
            index = await call
        except RequestRejected as err:
            pending.fail(str(err))  # refused on validation or apply: not applied
        except (ClientError, OSError, TimeoutError) as err:
            pending.info(f"{type(err).__name__}: {err}")
        else:
            pending.ok(index)
        return True

    async def read(self, client: Client, process: str) -> bool:
        """One linearizable read of the watched ids; True if it succeeded."""
        pending = self.history.invoke(process, "read", self.ids)
        try:
            services = await client.services()
        except (ClientError, OSError, TimeoutError) as err:
            pending.fail(f"{type(err).__name__}: {err}")
            return False
        watched = set(self.ids)
        pending.ok({s.id: s.address for s in services if s.id in watched})
        return True

    async def client(
        self, client: Client, process: str, budget: Budget, *, pace: float = 0.0
    ) -> None:
        """Reads and writes, ``pace`` seconds apart (a simulation on virtual
        time would otherwise run them back to back)."""
        await self.lockstep(client, [process], budget, pace=pace)

    async def lockstep(
        self, client: Client, processes: list[str], budget: Budget, *, pace: float = 0.0
    ) -> None:
        """Like :meth:`client` for several processes sharing one client, each
        step started by all of them in the same instant: their writes travel
        as one ``WriteBatch`` (each is still its own op in the history)."""
        while budget.more():
            steps = await asyncio.gather(*(self._step(client, p) for p in processes))
            if not all(steps):
                return
            if pace:
                await asyncio.sleep(pace)

    async def _step(self, client: Client, process: str) -> bool:
        """One read or write; False once the workload is done."""
        r = self.rng.random()
        if r < 0.4:
            await self.read(client, process)
            return True
        return await self.write(client, process, self.rng.choice(self.ids), r < 0.85)

    async def reader(self, client: Client, process: str, budget: Budget) -> None:
        """Reads only, paced: for a client that knows one coordinator (a deposed
        leader cut off from the others must not answer it from its own state)."""
        while budget.more():
            await self.read(client, process)
            await asyncio.sleep(0.02)

    async def final_read(self, client: Client) -> bool:
        for _ in range(20):  # bounded: each read waits out the client's request timeout
            if await self.read(client, "final"):
                return True
        return False


__all__ = [
    "AMBIGUOUS_CODES",
    "Attempted",
    "Bank",
    "Budget",
    "Directory",
    "ListAppend",
    "decode_list",
    "encode_list",
    "maybe_applied",
    "run_transaction",
]
