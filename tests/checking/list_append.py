"""Strict serializability of list-append transactions, after Elle.

A transaction (``f == "txn"``) is a tuple of micro-ops: ``("append", key, v)``
adds ``v`` at the end of the list stored at ``key``; ``("r", key, None)`` reads
it. An ``ok`` transaction's ``value`` is the same tuple with every read filled
in: ``("r", key, (v1, v2, ...))``. Every appended value is unique per key, so a
read names the transaction behind each element, and the longest read of a key
gives that key's version order (every read must be a prefix of it).

From the orders it infers, between transactions:

- ``ww`` — T1 appended a value, T2 appended the next one on the same key;
- ``wr`` — T2 read a list whose last element T1 appended;
- ``rw`` — T1 read a list, T2 appended the element that came next;
- ``rt`` — T1 completed before T2 was invoked (real time: *strict*
  serializability), kept sparse: its transitive closure is real-time order.

A cycle means no serial order explains what clients saw. Cycles are named by
their edges as Adya does: ``G0`` (ww only), ``G1c`` (ww and wr), ``G-single``
(exactly one rw), ``G2-item`` (more); ``-realtime`` when the cycle needs a
real-time edge. Each strongly connected component reports its most specific
cycle, with every step explained. Besides cycles:

- ``duplicate-elements`` — a value appears twice in one read: a transaction
  was applied twice (a retry that double-applied);
- ``garbage-read`` — a read holds a value no transaction appended;
- ``aborted-read`` (G1a) — a read holds a value of a ``fail`` transaction;
- ``intermediate-read`` (G1b) — a read ends with a value its writer followed
  with another append to the same key;
- ``internal`` — a transaction's read disagrees with its own earlier ops;
- ``incompatible-order`` — two reads of a key that are not prefixes of one another;
- ``lost-write`` — an acknowledged append that no read ever holds although a
  read of its key began after it completed (invariant I3, "nothing lost");
- ``stale-read`` — a read that misses an append acknowledged before the read began.

``info`` transactions may or may not have committed: their appends count when
some read holds them; their reads are unknown. ``fail`` ones must be invisible.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .history import Op, short
from .result import Anomaly, CheckResult, distinct, result

READ = "r"
APPEND = "append"

Key = Hashable
Successors = Callable[[int], list[int]]

# Cycle searches, most specific first: (name, edge types allowed besides one rw).
_SEARCHES: tuple[tuple[str, frozenset[str], bool], ...] = (
    ("G0", frozenset({"ww"}), False),
    ("G1c", frozenset({"ww", "wr"}), False),
    ("G-single", frozenset({"ww", "wr"}), True),
    ("G2-item", frozenset({"ww", "wr", "rw"}), False),
    ("G0-realtime", frozenset({"ww", "rt"}), False),
    ("G1c-realtime", frozenset({"ww", "wr", "rt"}), False),
    ("G-single-realtime", frozenset({"ww", "wr", "rt"}), True),
    ("G2-item-realtime", frozenset({"ww", "wr", "rw", "rt"}), False),
)
# When an edge has several types, the explanation shows the first allowed one.
_PREFERENCE = ("ww", "wr", "rt", "rw")


@dataclass(frozen=True, slots=True)
class _Read:
    txn: Op
    key: Key
    #: What the read returned.
    values: tuple[Hashable, ...]
    #: The part others wrote: ``values`` without this transaction's own appends.
    external: tuple[Hashable, ...]


def micro_ops(txn: Op) -> tuple[tuple[str, Key, Any], ...]:
    """The micro-ops of a transaction: with read results when it is ok."""
    mops: tuple[tuple[str, Key, Any], ...] = txn.value if txn.ok else txn.args
    return mops


def _dedupe(values: Iterable[Hashable]) -> tuple[Hashable, ...]:
    return tuple(dict.fromkeys(values))


class _Graph:
    """Dependency edges between transactions (by op id), each with one reason per type."""

    def __init__(self) -> None:
        self.out: dict[int, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.why: dict[tuple[int, int, str], str] = {}

    def add(self, a: Op, b: Op, kind: str, why: str) -> None:
        if a.id == b.id:
            return
        self.out[a.id][b.id].add(kind)
        self.why.setdefault((a.id, b.id, kind), why)

    def count(self) -> int:
        return sum(len(kinds) for targets in self.out.values() for kinds in targets.values())


class _Checker:
    def __init__(self, history: Sequence[Op], realtime: bool, max_reported: int) -> None:
        self.txns = [op for op in history if op.f == "txn"]
        self.by_id = {t.id: t for t in self.txns}
        self.realtime = realtime
        self.max_reported = max_reported
        self.anomalies: list[Anomaly] = []
        self.writer: dict[tuple[Key, Hashable], Op] = {}
        #: Each transaction's appends, per key, in its own order.
        self.appends: dict[tuple[int, Key], list[Hashable]] = defaultdict(list)
        self.reads: list[_Read] = []
        self.orders: dict[Key, tuple[Hashable, ...]] = {}
        #: Transactions whose appends some read holds twice.
        self.applied_twice: set[int] = set()
        self.graph = _Graph()

    def report(self, kind: str, explanation: str, ops: Iterable[Op]) -> None:
        self.anomalies.append(Anomaly(kind, explanation, distinct(ops)))

    # -- what was written and read --------------------------------------------------

    def index_writes(self) -> None:
        for t in self.txns:
            for f, key, v in t.args:
                if f != APPEND:
                    continue
                if (key, v) in self.writer:
                    raise ValueError(
                        f"the workload appended {v!r} to {key!r} twice (ops "
                        f"#{self.writer[key, v].id} and #{t.id}): appended values must be unique"
                    )
                self.writer[key, v] = t
                self.appends[t.id, key].append(v)

    def index_reads(self) -> None:
        for t in self.txns:
            if not t.ok:
                continue
            known: dict[Key, tuple[Hashable, ...]] = {}
            own: dict[Key, list[Hashable]] = defaultdict(list)
            for f, key, v in micro_ops(t):
                if f == APPEND:
                    own[key].append(v)
                    if key in known:
                        known[key] = (*known[key], v)
                    continue
                values = tuple(v) if v is not None else ()
                mine = tuple(own[key])
                if key in known:
                    if values != known[key]:
                        self.report(
                            "internal",
                            f"#{t.id} read {key!r} = {short(values)} after its own ops "
                            f"left it {short(known[key])}",
                            [t],
                        )
                    known[key] = values
                    continue
                if mine and values[len(values) - len(mine) :] != mine:
                    self.report(
                        "internal",
                        f"#{t.id} read {key!r} = {short(values)} without its own "
                        f"appends {short(mine)} at the end",
                        [t],
                    )
                    external = values
                else:
                    external = values[: len(values) - len(mine)]
                known[key] = values
                self.reads.append(_Read(t, key, values, external))

    def check_reads(self) -> None:
        duplicated: dict[tuple[Key, Hashable], list[_Read]] = defaultdict(list)
        for r in self.reads:
            for v, n in Counter(r.values).items():
                if n > 1:
                    duplicated[r.key, v].append(r)
        for (key, v), reads in duplicated.items():
            first = reads[0]
            w = self.writer.get((key, v))
            if w is not None:
                self.applied_twice.add(w.id)
            at = [i for i, x in enumerate(first.values) if x == v]
            self.report(
                "duplicate-elements",
                f"{v!r} appears {len(at)} times in {key!r} (at positions {at} of "
                f"{len(first.values)}), first in #{first.txn.id}'s read and in "
                f"{len(reads)} read(s) in all: "
                + (f"#{w.id}, which appended it, " if w else "the transaction appending it ")
                + "took effect more than once",
                [first.txn, *([w] if w else [])],
            )
        for r in self.reads:
            t, key = r.txn, r.key
            for v in _dedupe(r.values):
                w = self.writer.get((key, v))
                if w is None:
                    self.report(
                        "garbage-read",
                        f"#{t.id} read {v!r} in {key!r}, which no transaction appended",
                        [t],
                    )
                elif w.failed:
                    self.report(
                        "aborted-read",
                        f"#{t.id} read {v!r} in {key!r}, appended by #{w.id}, which failed "
                        f"({w.error or 'no reason given'})",
                        [t, w],
                    )
            if r.external:
                last = r.external[-1]
                w = self.writer.get((key, last))
                if w is not None and w.id != t.id:
                    mine = self.appends[w.id, key]
                    if last in mine and mine[-1] != last:
                        self.report(
                            "intermediate-read",
                            f"#{t.id} read {key!r} ending in {last!r}, but its writer "
                            f"#{w.id} appended {short(mine[mine.index(last) + 1 :])} after it",
                            [t, w],
                        )

    def infer_orders(self) -> None:
        by_key: dict[Key, list[_Read]] = defaultdict(list)
        for r in self.reads:
            by_key[r.key].append(r)
        for key, reads in by_key.items():
            longest = max(reads, key=lambda r: len(_dedupe(r.values)))
            order = _dedupe(longest.values)
            compatible = True
            for r in reads:
                mine = _dedupe(r.values)
                if order[: len(mine)] != mine:
                    compatible = False
                    self.report(
                        "incompatible-order",
                        f"{key!r}: #{r.txn.id} read {short(r.values)} and #{longest.txn.id} "
                        f"read {short(longest.values)}; neither is a prefix of the other",
                        [r.txn, longest.txn],
                    )
                    break
            if compatible:
                self.orders[key] = order

    # -- dependencies ---------------------------------------------------------------

    def _visible_writer(self, key: Key, v: Hashable) -> Op | None:
        w = self.writer.get((key, v))
        return None if w is None or w.failed else w

    def infer_edges(self) -> None:
        g = self.graph
        for key, order in self.orders.items():
            for a_v, b_v in itertools.pairwise(order):
                a, b = self._visible_writer(key, a_v), self._visible_writer(key, b_v)
                if a is not None and b is not None:
                    g.add(a, b, "ww", f"on {key!r} #{a.id} appended {a_v!r}, #{b.id} next {b_v!r}")
        for r in self.reads:
            t, key = r.txn, r.key
            if r.external:
                w = self._visible_writer(key, r.external[-1])
                if w is not None:
                    g.add(
                        w,
                        t,
                        "wr",
                        f"#{t.id} read {key!r} = {short(r.external)}, "
                        f"ending in #{w.id}'s {r.external[-1]!r}",
                    )
            known = self.orders.get(key)
            seen = _dedupe(r.external)
            if known is not None and len(seen) < len(known) and known[: len(seen)] == seen:
                nxt = known[len(seen)]
                w = self._visible_writer(key, nxt)
                if w is not None:
                    g.add(
                        t,
                        w,
                        "rw",
                        f"#{t.id} read {key!r} = {short(r.external)}, "
                        f"missing {nxt!r} that #{w.id} appended next",
                    )
        if self.realtime:
            self._realtime_edges()

    def _realtime_edges(self) -> None:
        """T1 -> T2 when T1 completed before T2 began, as a sparse graph whose
        transitive closure is that order: each transaction points to the
        transactions that completed last before it began."""
        events: list[tuple[float, int, Op]] = []
        for t in self.txns:
            if t.failed:
                continue
            events.append((t.invoke, 0, t))  # invocations first: equal times are concurrent
            if t.ok and t.complete is not None:
                events.append((t.complete, 1, t))
        events.sort(key=lambda e: (e[0], e[1], e[2].id))
        frontier: set[int] = set()
        before: dict[int, frozenset[int]] = {}
        for _, kind, t in events:
            if kind == 0:
                before[t.id] = frozenset(frontier)
                for p in before[t.id]:
                    self.graph.add(self.by_id[p], t, "rt", f"#{p} completed before #{t.id} began")
            else:
                frontier -= before[t.id]
                frontier.add(t.id)

    # -- realtime visibility of acknowledged appends -----------------------------------

    def check_visibility(self) -> None:
        """Every read that began after an append was acknowledged must hold it."""
        reads_by_key: dict[Key, list[_Read]] = defaultdict(list)
        for r in self.reads:
            reads_by_key[r.key].append(r)
        acked: dict[Key, list[tuple[float, Hashable, Op]]] = defaultdict(list)
        for t in self.txns:
            if t.ok and t.complete is not None:
                for f, key, v in t.args:
                    if f == APPEND:
                        acked[key].append((t.complete, v, t))
        for key, order in self.orders.items():
            reads = sorted(reads_by_key[key], key=lambda r: r.txn.invoke)
            position = {v: i for i, v in enumerate(order)}
            last_read = max(reads, key=lambda r: r.txn.invoke)
            lost = [
                (v, w)
                for done, v, w in acked[key]
                if v not in position and done < last_read.txn.invoke
            ]
            if lost:
                self.report(
                    "lost-write",
                    f"{key!r}: {len(lost)} acknowledged append(s), e.g. {lost[0][0]!r} by "
                    f"#{lost[0][1].id}, are in no read, though #{last_read.txn.id} read "
                    f"{key!r} = {short(last_read.values)} after they completed",
                    [lost[0][1], last_read.txn],
                )
            writes = sorted((done, position[v], v, w) for done, v, w in acked[key] if v in position)
            stale = 0
            i = 0
            newest: tuple[int, Hashable, Op] | None = None
            for r in reads:
                while i < len(writes) and writes[i][0] < r.txn.invoke:
                    _, pos, v, w = writes[i]
                    if newest is None or pos > newest[0]:
                        newest = (pos, v, w)
                    i += 1
                if newest is None or newest[0] < len(_dedupe(r.values)):
                    continue
                stale += 1
                if stale <= 3:
                    pos, v, w = newest
                    self.report(
                        "stale-read",
                        f"#{r.txn.id} read {key!r} = {short(r.values)}, missing {v!r}, whose "
                        f"append #{w.id} was acknowledged before #{r.txn.id} began",
                        [w, r.txn],
                    )

    # -- cycles -----------------------------------------------------------------------

    def find_cycles(self) -> int:
        nodes = [t.id for t in self.txns if not t.failed]
        all_kinds = frozenset(_PREFERENCE)
        everything = self._successors(all_kinds, None)
        components = [c for c in _components(nodes, everything) if len(c) > 1]
        for component in components[: self.max_reported]:
            members = set(component)
            for name, kinds, one_rw in _SEARCHES:
                if not self.realtime and "rt" in kinds:
                    continue
                cycle = (
                    self._cycle_with_one_rw(members, kinds)
                    if one_rw
                    else self._cycle_within(members, kinds)
                )
                if cycle is not None:
                    self._report_cycle(name, cycle, kinds, first_rw=one_rw)
                    break
        return len(components)

    def _successors(self, kinds: frozenset[str], members: set[int] | None) -> Successors:
        out = self.graph.out

        def successors(a: int) -> list[int]:
            return [
                b
                for b, ks in out.get(a, {}).items()
                if ks & kinds and (members is None or b in members)
            ]

        return successors

    def _cycle_within(self, members: set[int], kinds: frozenset[str]) -> list[int] | None:
        for component in _components(sorted(members), self._successors(kinds, members)):
            if len(component) > 1:
                start = min(component)
                path = _path(start, start, self._successors(kinds, set(component)))
                if path is not None:
                    return path
        return None

    def _cycle_with_one_rw(self, members: set[int], kinds: frozenset[str]) -> list[int] | None:
        successors = self._successors(kinds, members)
        tried = 0
        for a in sorted(members):
            for b, ks in self.graph.out.get(a, {}).items():
                if "rw" not in ks or b not in members:
                    continue
                tried += 1
                if tried > 500:
                    return None  # bounded: the broader searches still name a cycle
                back = _path(b, a, successors)
                if back is not None:
                    return [a, *back]
        return None

    def _report_cycle(
        self, name: str, cycle: list[int], kinds: frozenset[str], *, first_rw: bool
    ) -> None:
        steps = []
        for n, (a, b) in enumerate(zip(cycle, [*cycle[1:], cycle[0]], strict=True)):
            have = {"rw"} if first_rw and n == 0 else self.graph.out[a][b] & kinds
            kind = next(k for k in _PREFERENCE if k in have)
            steps.append(f"#{a} -{kind}-> #{b} ({self.graph.why[a, b, kind]})")
        twice = sorted(self.applied_twice & set(cycle))
        because = (
            f" (#{', #'.join(map(str, twice))} took effect more than once: its two "
            "places in the orders may be what closes this cycle)"
            if twice
            else ""
        )
        self.report(
            name,
            f"a cycle of {len(cycle)} transactions: " + "; ".join(steps) + because,
            [self.by_id[i] for i in cycle],
        )


def _components(nodes: Sequence[int], successors: Successors) -> list[list[int]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[int, Iterable[int]]] = [(root, iter(successors(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(successors(nxt))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    component.append(x)
                    if x == node:
                        break
                out.append(component)
    return out


def _path(start: int, goal: int, successors: Successors) -> list[int] | None:
    """The shortest path start -> ... -> goal (one step at least), as the nodes
    from ``start`` up to the one before ``goal``; None if there is none."""
    parent: dict[int, int] = {}
    queue = deque([start])
    visited = {start} if start != goal else set()
    while queue:
        a = queue.popleft()
        for b in successors(a):
            if b == goal:
                path = [a]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return path[::-1]
            if b not in visited:
                visited.add(b)
                parent[b] = a
                queue.append(b)
    return None


def check_list_append(
    history: Sequence[Op], *, realtime: bool = True, max_reported: int = 20
) -> CheckResult:
    """Check list-append transactions (see the module docstring).

    ``realtime=False`` checks plain serializability (no ``rt`` edges, no
    stale-read or lost-write checks). ``max_reported`` bounds the cycles named.
    """
    c = _Checker(history, realtime, max_reported)
    c.index_writes()
    c.index_reads()
    c.check_reads()
    c.infer_orders()
    c.infer_edges()
    if realtime:
        c.check_visibility()
    components = c.find_cycles()
    outcomes = Counter(str(t.outcome) for t in c.txns)
    return result(
        "list-append " + ("strict serializability" if realtime else "serializability"),
        c.anomalies,
        txns=len(c.txns),
        ok=outcomes["ok"],
        info=outcomes["info"],
        fail=outcomes["fail"],
        keys=len(c.orders),
        edges=c.graph.count(),
        cyclic_components=components,
    )
