"""The coordinators' state machine: each command, each rejection, sessions, determinism.

Rejections must change nothing but ``applied_index`` (checked with
``content_digest``); replicas fed the same entries must agree (``digest``), with or
without a snapshot/restore in between.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bedrock_cp import protocol
from bedrock_cp.coordinator import (
    Applied,
    BeginEpoch,
    ClusterConfig,
    Command,
    CoordinatorState,
    DeregisterServices,
    DropCoordinator,
    ForgetRetired,
    Proposal,
    RegisterNode,
    RegisterServices,
    Rejected,
    RetireWorkers,
    SetCoordinator,
    SnapshotError,
    StoreLayout,
    UpdateConfig,
    encode_proposal,
)
from bedrock_cp.coordinator.limits import MAX_NAME_LEN, MAX_SERVICES_PER_COMMAND
from bedrock_cp.coordinator.service import Coordinator
from bedrock_cp.coordinator.writes import write_proposal, write_reply
from bedrock_cp.protocol import RetiredWorker, Service
from bedrock_cp.wire import WireError
from bedrock_cp_native import Snapshot


def enc(command: Command, client_id: int = 0, seq: int = 0) -> bytes:
    return encode_proposal(Proposal(client_id, seq, command))


class Feeder:
    """Applies commands at consecutive indexes, as the Raft driver would."""

    def __init__(self, state: CoordinatorState | None = None) -> None:
        self.state = state if state is not None else CoordinatorState()

    def raw(self, data: bytes) -> Applied | Rejected:
        return self.state.apply(self.state.applied_index + 1, data)

    def __call__(self, command: Command, client_id: int = 0, seq: int = 0) -> Applied | Rejected:
        return self.raw(enc(command, client_id, seq))

    def ok(self, command: Command, client_id: int = 0, seq: int = 0) -> int | None:
        result = self(command, client_id, seq)
        assert isinstance(result, Applied), result
        return result.value


def svc(id: str, node: str = "n1", kind: str = "log", address: str = "h:1") -> Service:
    return Service(id, kind, node, address)


# ----------------------------------------------------------------- commands


def test_register_node_records_node_and_services() -> None:
    f = Feeder()
    value = f.ok(RegisterNode("n1", "h:9", ["storage", "log", "log"], [svc("a"), svc("b")], 7))
    assert value == 2
    s = f.state
    assert [r.id for r in s.services()] == ["a", "b"]
    assert s.service("a") == protocol.ServiceRecord("a", "log", "n1", "h:1", 7)
    node = s.nodes["n1"]
    assert (node.address, node.capabilities, node.registered_index) == (
        "h:9",
        ["log", "storage"],
        1,
    )


def test_register_node_replaces_everything_that_node_registered() -> None:
    f = Feeder()
    f.ok(RegisterNode("n1", "h:9", ["log"], [svc("a"), svc("b")], 1))
    f.ok(RegisterServices([svc("c")], 2))  # also n1's, though not via RegisterNode
    f.ok(RegisterServices([svc("z", node="n2")], 2))
    f.ok(RegisterNode("n1", "h:10", ["storage"], [svc("b", address="h:2")], 3))
    s = f.state
    assert [r.id for r in s.services()] == ["b", "z"]
    assert s.service("b") == protocol.ServiceRecord("b", "log", "n1", "h:2", 3)
    assert s.nodes["n1"].capabilities == ["storage"]
    assert s.nodes["n1"].registered_index == 4
    f.ok(RegisterNode("n1", "h:10", [], [], 4))
    assert s.services("n1") == [] and s.service_count == 1


def test_service_takeover_only_by_register_node_of_the_new_owner() -> None:
    f = Feeder()
    f.ok(RegisterNode("n1", "h:1", [], [svc("a"), svc("b")], 1))
    before = f.state.content_digest()
    r = f(RegisterServices([svc("a", node="n2")], 2))
    assert isinstance(r, Rejected)
    assert "'a' is registered by node 'n1'" in r.reason
    assert f.state.content_digest() == before
    # The same node may update its own service through RegisterServices.
    f.ok(RegisterServices([svc("a", address="h:5")], 3))
    assert f.state.service("a") == protocol.ServiceRecord("a", "log", "n1", "h:5", 3)
    # RegisterNode of n2 takes 'a' over; n1 keeps 'b'.
    f.ok(RegisterNode("n2", "h:2", [], [svc("a", node="n2")], 4))
    assert [r.id for r in f.state.services("n2")] == ["a"]
    assert [r.id for r in f.state.services("n1")] == ["b"]
    # n1 re-registering without 'a' must not remove n2's 'a'.
    f.ok(RegisterNode("n1", "h:1", [], [], 5))
    assert [r.id for r in f.state.services()] == ["a"]


def test_register_and_deregister_services() -> None:
    f = Feeder()
    assert f.ok(RegisterServices([svc("a"), svc("b", node="n2")], 1)) == 2
    assert f.ok(DeregisterServices(["a", "missing"])) == 1
    assert [r.id for r in f.state.services()] == ["b"]
    assert f.ok(DeregisterServices(["a"])) == 0  # idempotent
    assert f.state.services("n2")[0].id == "b"
    f.ok(DeregisterServices(["b"]))
    assert f.state.service_count == 0 and f.state.services("n2") == []


def test_update_config() -> None:
    f = Feeder()
    assert f.state.config == ClusterConfig()
    f.ok(UpdateConfig({"desired_logs": 5, "resolvers": 2, "excluded_nodes": ["b", "a"]}))
    c = f.state.config
    assert (c.desired_logs, c.resolvers, c.excluded_nodes) == (5, 2, ["a", "b"])
    assert c.storage_replicas == 3


def test_storage_replacement_is_a_parameter() -> None:
    f = Feeder()
    assert f.state.config.storage_replacement_s == 30
    f.ok(UpdateConfig({"storage_replacement_s": 2}))
    assert f.state.config.storage_replacement_s == 2
    assert isinstance(f(UpdateConfig({"storage_replacement_s": 0})), Rejected)


def retired(worker_id: str, epoch: int = 2, node: str = "n1") -> RetiredWorker:
    return RetiredWorker(worker_id, "log", node, "h:1", epoch)


def test_retirement_is_recorded_by_the_current_epoch_until_forgotten() -> None:
    f = Feeder()
    f.ok(BeginEpoch("n1"))
    f.ok(BeginEpoch("n1"))
    assert f.ok(RetireWorkers(2, [retired("log-a"), retired("log-b", node="n2")])) == 2
    assert f.ok(RetireWorkers(2, [retired("log-a")])) == 0  # idempotent
    assert [w.id for w in f.state.retiring] == ["log-a", "log-b"]
    # Kept across a snapshot (a restarted coordinator still knows what to remove).
    restored = CoordinatorState.restore(f.state.snapshot())
    assert restored.retiring == f.state.retiring
    # A superseded Director can neither retire nor forget.
    f.ok(BeginEpoch("n2"))
    before = f.state.content_digest()
    for stale in (RetireWorkers(2, [retired("log-c")]), ForgetRetired(2, ["log-a"])):
        r = f(stale)
        assert isinstance(r, Rejected) and "current epoch is 3" in r.reason
    assert f.state.content_digest() == before
    assert f.ok(ForgetRetired(3, ["log-a", "unknown"])) == 1
    assert [w.id for w in f.state.retiring] == ["log-b"]


def test_coordinator_addresses() -> None:
    f = Feeder()
    f.ok(SetCoordinator(1, "c1:4000"))
    f.ok(SetCoordinator(2, "c2:4000"))
    f.ok(SetCoordinator(1, "c1:4001"))
    assert dict(f.state.coordinators) == {1: "c1:4001", 2: "c2:4000"}
    f.ok(DropCoordinator(1))
    assert dict(f.state.coordinators) == {2: "c2:4000"}


def test_epochs_strictly_increase_and_fence_the_layout() -> None:
    f = Feeder()
    assert f.state.epoch == 0 and f.state.layout is None
    epochs = [f.ok(BeginEpoch(f"n{i % 2}")) for i in range(5)]
    assert epochs == [1, 2, 3, 4, 5]
    assert f.state.epoch_node == "n0"
    assert f.ok(StoreLayout(5, b"tsl-5")) == 5
    # A Director of epoch 4 (superseded) cannot overwrite it.
    before = f.state.content_digest()
    r = f(StoreLayout(4, b"tsl-4"))
    assert isinstance(r, Rejected)
    assert "epoch 4" in r.reason and "current epoch is 5" in r.reason
    assert f.state.content_digest() == before
    assert f.state.layout is not None and f.state.layout.layout == b"tsl-5"
    f.ok(BeginEpoch("n1"))
    assert isinstance(f(StoreLayout(5, b"late")), Rejected)
    assert f.ok(StoreLayout(6, b"tsl-6")) == 6


def test_apply_noop_and_index_order() -> None:
    s = CoordinatorState()
    s.apply_noop(1)
    s.apply(3, enc(BeginEpoch("n")))  # gaps are the driver's business
    assert s.applied_index == 3
    with pytest.raises(AssertionError):
        s.apply(3, enc(BeginEpoch("n")))
    with pytest.raises(AssertionError):
        s.apply_noop(2)
    assert s.epoch == 1


# --------------------------------------------------------------- rejections

LONG = "x" * (MAX_NAME_LEN + 1)
SETUP: list[Command] = [
    RegisterNode("n1", "h:1", ["log"], [svc("a"), svc("b")], 1),
    SetCoordinator(1, "c1:1"),
    SetCoordinator(2, "c2:1"),
    BeginEpoch("n1"),
]

INVALID: list[tuple[str, Command, str]] = [
    ("empty node", RegisterNode("", "h:1", [], [], 1), "node must be non-empty"),
    ("long node", RegisterNode(LONG, "h:1", [], [], 1), "at most 256"),
    ("node addr", RegisterNode("n2", "nohost", [], [], 1), "not host:port"),
    ("port 0", RegisterNode("n2", "h:0", [], [], 1), "outside 1..65535"),
    ("port big", RegisterNode("n2", "h:65536", [], [], 1), "outside 1..65535"),
    ("port text", RegisterNode("n2", "h:+80", [], [], 1), "bad port"),
    ("v6 bare", RegisterNode("n2", "::1:80", [], [], 1), "IPv6"),
    ("negative at", RegisterNode("n2", "h:1", [], [], -1), "at_ms must be >= 0"),
    ("empty capability", RegisterNode("n2", "h:1", [""], [], 1), "capability must be"),
    ("foreign node", RegisterNode("n2", "h:1", [], [svc("c", node="n3")], 1), "names node 'n3'"),
    ("dup in node", RegisterNode("n2", "h:1", [], [svc("c", "n2"), svc("c", "n2")], 1), "twice"),
    ("no services", RegisterServices([], 1), "no services"),
    ("empty id", RegisterServices([svc("ok"), svc("")], 1), "service id must be non-empty"),
    ("long id", RegisterServices([svc(LONG)], 1), "service id is 257"),
    ("empty kind", RegisterServices([svc("c", kind="")], 1), "'c' kind must be non-empty"),
    ("empty svc node", RegisterServices([svc("c", node="")], 1), "'c' node must be non-empty"),
    ("svc address", RegisterServices([svc("c", address="h:99999")], 1), "'c' address"),
    ("steal", RegisterServices([svc("c"), svc("a", node="n9")], 1), "registered by node 'n1'"),
    (
        "too many",
        RegisterServices([svc(f"s{i}") for i in range(MAX_SERVICES_PER_COMMAND + 1)], 1),
        "at most 10000",
    ),
    ("no ids", DeregisterServices([]), "no service ids"),
    ("empty dereg id", DeregisterServices(["a", ""]), "service id must be non-empty"),
    ("unknown key", UpdateConfig({"desired_logs": 2, "nonsense": 1}), "'nonsense'"),
    ("no changes", UpdateConfig({}), "no config changes"),
    ("wrong type", UpdateConfig({"desired_logs": "3"}), "'desired_logs' must be an integer"),
    ("out of range", UpdateConfig({"resolvers": 0}), "outside 1..64"),
    ("list type", UpdateConfig({"excluded_nodes": "n1"}), "list of strings"),
    # Raft timers are each node's own ([timers] in its file), not the cluster's.
    ("timers", UpdateConfig({"heartbeat_ms": 30}), "unknown config parameter 'heartbeat_ms'"),
    ("coord id", SetCoordinator(0, "c:1"), "coordinator id must be >= 1"),
    ("coord addr", SetCoordinator(3, "c"), "coordinator 3 address"),
    ("coord dup addr", SetCoordinator(3, "c1:1"), "already coordinator 1's"),
    ("drop unknown", DropCoordinator(7), "no coordinator 7"),
    ("epoch node", BeginEpoch(""), "epoch node must be non-empty"),
    ("stale layout", StoreLayout(0, b"x"), "epoch 0 but the current epoch is 1"),
    ("retire nothing", RetireWorkers(1, []), "no workers to retire"),
    ("retire stale", RetireWorkers(0, [retired("w", 0)]), "current epoch is 1"),
    ("retire epoch", RetireWorkers(1, [retired("w", 5)]), "names epoch 5, not 1"),
    ("retire twice", RetireWorkers(1, [retired("w", 1), retired("w", 1)]), "appears twice"),
    ("retire id", RetireWorkers(1, [retired("", 1)]), "retired worker id must be"),
    ("retire addr", RetireWorkers(1, [RetiredWorker("w", "log", "n", "x", 1)]), "not host:port"),
    ("forget stale", ForgetRetired(2, ["w"]), "current epoch is 1"),
    ("forget id", ForgetRetired(1, [""]), "retired worker id must be"),
    ("future layout", StoreLayout(2, b"x"), "epoch 2 but the current epoch is 1"),
]


@pytest.mark.parametrize(
    ("command", "expected"), [(c, e) for _, c, e in INVALID], ids=[n for n, _, _ in INVALID]
)
def test_invalid_command_is_rejected_and_changes_nothing(command: Command, expected: str) -> None:
    f = Feeder()
    for c in SETUP:
        f.ok(c)
    before = f.state.content_digest()
    index = f.state.applied_index + 1
    result = f(command)
    assert isinstance(result, Rejected), result
    assert result.index == index
    assert expected in result.reason
    assert f.state.content_digest() == before
    assert f.state.applied_index == index


def test_store_layout_before_any_epoch() -> None:
    r = Feeder()(StoreLayout(0, b"x"))
    assert isinstance(r, Rejected) and r.reason == "no epoch has begun"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"garbage bytes",
        msgspec.msgpack.encode([1, 2]),
        msgspec.msgpack.encode([1, 2, ["nope"]]),
        msgspec.msgpack.encode([1, 2, ["epoch"]]),  # missing field
        msgspec.msgpack.encode([1, 2, ["epoch", 5]]),  # wrong type
        msgspec.msgpack.encode([1.5, 2, ["epoch", "n"]]),
        msgspec.msgpack.encode([True, 2, ["epoch", "n"]]),  # strict: bool is not int
    ],
)
def test_garbage_is_rejected_not_raised(data: bytes) -> None:
    f = Feeder()
    f.ok(BeginEpoch("n"))
    before = f.state.digest()
    r = f.raw(data)
    assert isinstance(r, Rejected) and r.reason.startswith("undecodable command")
    assert f.state.applied_index == 2
    f.state.applied_index = 1  # only the index moved
    assert f.state.digest() == before


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_raise(data: bytes) -> None:
    result = CoordinatorState().apply(1, data)
    assert isinstance(result, Applied | Rejected)


# ----------------------------------------------------------------- sessions


def test_retried_write_applies_once_and_returns_the_same_result() -> None:
    f = Feeder()
    first = f(BeginEpoch("n1"), client_id=9, seq=1)
    f.ok(RegisterServices([svc("x")], 1))  # someone else's write in between
    digest = f.state.content_digest()
    retry = f(BeginEpoch("n1"), client_id=9, seq=1)
    assert retry == first == Applied(1, 1)
    assert f.state.epoch == 1 and f.state.content_digest() == digest
    assert f.state.applied_index == 3
    # A rejected write is also answered from the cache.
    bad = f(StoreLayout(7, b""), client_id=9, seq=2)
    assert isinstance(bad, Rejected)
    assert f(StoreLayout(1, b"ok"), client_id=9, seq=2) == bad
    assert f.state.layout is None
    # Older seq: rejected, not applied.
    old = f(BeginEpoch("n1"), client_id=9, seq=1)
    assert isinstance(old, Rejected) and "stale request seq" in old.reason
    assert f.state.epoch == 1
    # The next seq applies; seq gaps are allowed.
    assert f.ok(BeginEpoch("n1"), client_id=9, seq=5) == 2
    # Another client has its own numbering; client 0 has none.
    assert f.ok(BeginEpoch("n1"), client_id=10, seq=1) == 3
    assert f.ok(BeginEpoch("n1")) == 4 and f.ok(BeginEpoch("n1")) == 5


def test_bad_session_fields_are_rejected() -> None:
    f = Feeder()
    r = f(BeginEpoch("n"), client_id=-1, seq=1)
    assert isinstance(r, Rejected) and "client_id must be >= 0" in r.reason
    r = f(BeginEpoch("n"), client_id=3, seq=0)
    assert isinstance(r, Rejected) and "seq must be >= 1" in r.reason
    assert f.state.epoch == 0 and len(f.state.sessions) == 0


def test_sessions_evict_the_least_recently_active_client() -> None:
    f = Feeder(CoordinatorState(session_capacity=2))
    f.ok(BeginEpoch("n"), client_id=1, seq=1)
    f.ok(BeginEpoch("n"), client_id=2, seq=1)
    f(BeginEpoch("n"), client_id=1, seq=1)  # a replay is activity: client 2 is now oldest
    f.ok(BeginEpoch("n"), client_id=3, seq=1)
    sessions = f.state.sessions
    assert [s.client_id for s in sessions.entries()] == [1, 3]
    assert sessions.get(2) is None
    # The evicted client's retry applies again (documented limit of eviction).
    assert f.ok(BeginEpoch("n"), client_id=2, seq=1) == 4
    assert [s.client_id for s in sessions.entries()] == [3, 2]


# --------------------------------------------------------- snapshot/restore


def populated() -> CoordinatorState:
    f = Feeder(CoordinatorState(session_capacity=3))
    f.ok(RegisterNode("n1", "h:1", ["log"], [svc("a"), svc("b")], 1), client_id=4, seq=1)
    f.ok(RegisterServices([svc("c", node="n2")], 2), client_id=5, seq=1)
    f.ok(SetCoordinator(1, "c:1"))
    f.ok(UpdateConfig({"excluded_nodes": ["n2"]}))
    f.ok(BeginEpoch("n1"))
    f.ok(StoreLayout(1, b"\x00tsl"))
    f.ok(RetireWorkers(1, [retired("old-log", 1)]))
    f.state.apply_noop(20)
    return f.state


def test_a_compaction_snapshot_keeps_the_directory_in_the_order_it_was_built() -> None:
    f = Feeder(CoordinatorState(session_capacity=3))
    f.ok(RegisterServices([svc("z"), svc("m")], 1), client_id=4, seq=1)
    f.ok(RegisterServices([svc("a")], 2), client_id=4, seq=2)
    unsorted = f.state.snapshot(canonical=False)
    restored = CoordinatorState.restore(unsorted)
    assert restored == f.state  # canonically: the same state
    assert restored.snapshot(canonical=False) == unsorted
    assert [s.id for s in restored.services()] == ["a", "m", "z"]
    assert unsorted != f.state.snapshot()  # built z, m, a: not sorted


def test_snapshot_round_trip_is_equal_in_every_way() -> None:
    s = populated()
    r = CoordinatorState.restore(s.snapshot())
    assert r == s and r.digest() == s.digest() and r.snapshot() == s.snapshot()
    assert r.services() == s.services() and r.services("n1") == s.services("n1")
    assert dict(r.nodes) == dict(s.nodes) and dict(r.coordinators) == dict(s.coordinators)
    assert (r.epoch, r.epoch_node, r.layout, r.config) == (
        s.epoch,
        s.epoch_node,
        s.layout,
        s.config,
    )
    assert r.applied_index == 20 and r.sessions.capacity == 3
    assert r.sessions.entries() == s.sessions.entries()
    assert r.retiring == s.retiring == [retired("old-log", 1)]
    # And both continue identically, sessions included.
    for state in (r, s):
        # A retry of client 4's seq 1 (the RegisterNode) is answered from the restored cache.
        assert state.apply(21, enc(BeginEpoch("n1"), 4, 1)) == Applied(1, 2)
        state.apply(22, enc(RegisterNode("n1", "h:1", [], [], 3)))
    assert r.digest() == s.digest()


@pytest.mark.parametrize(
    "data",
    [b"", b"junk", msgspec.msgpack.encode(["coord-v0", 1]), msgspec.msgpack.encode({"a": 1})],
)
def test_bad_snapshot_raises_a_clear_error(data: bytes) -> None:
    with pytest.raises(SnapshotError, match="coordinator snapshot"):
        CoordinatorState.restore(data)


def test_inconsistent_snapshot_is_refused() -> None:
    snap = msgspec.msgpack.decode(populated().snapshot())
    snap[4] = snap[4] + snap[4][:1]  # a service id twice
    with pytest.raises(SnapshotError, match="appears twice"):
        CoordinatorState.restore(msgspec.msgpack.encode(snap))


# ------------------------------------------------------------- determinism

# Mostly valid values, so that most commands apply and the state gets interesting.
NAMES = ["n1", "n2", "n3", "n1", "n2", ""]
IDS = ["a", "b", "c", "d", "a", "b", ""]
ADDRS = ["h:1", "h:2", "h:1", "h:2", "h:0", "nohost"]

services_st = st.lists(
    st.builds(
        Service,
        id=st.sampled_from(IDS),
        kind=st.sampled_from(["log", "storage"]),
        node=st.sampled_from(NAMES),
        address=st.sampled_from(ADDRS),
    ),
    max_size=4,
)
at_st = st.sampled_from([0, 5, 100, 1000, -1])
commands_st: st.SearchStrategy[Command] = st.one_of(
    st.builds(
        RegisterNode,
        node=st.sampled_from(NAMES),
        address=st.sampled_from(ADDRS),
        capabilities=st.lists(st.sampled_from(["log", "storage", "log", ""]), max_size=3),
        services=services_st,
        at_ms=at_st,
    ),
    st.builds(RegisterServices, services=services_st.filter(bool), at_ms=at_st),
    st.builds(
        DeregisterServices, service_ids=st.lists(st.sampled_from(IDS), min_size=1, max_size=3)
    ),
    st.builds(
        UpdateConfig,
        changes=st.dictionaries(
            st.sampled_from(
                ["desired_logs", "resolvers", "heartbeat_ms", "bogus", "excluded_nodes"]
            ),
            st.one_of(st.integers(-1, 500), st.sampled_from(["x", ""]), st.just(["n1"])),
            min_size=1,
            max_size=2,
        ),
    ),
    st.builds(SetCoordinator, id=st.integers(0, 4), address=st.sampled_from(ADDRS)),
    st.builds(DropCoordinator, id=st.integers(0, 4)),
    st.builds(BeginEpoch, node=st.sampled_from(NAMES)),
    st.builds(StoreLayout, epoch=st.integers(0, 2), layout=st.binary(max_size=8)),
    st.builds(
        RetireWorkers,
        epoch=st.integers(0, 2),
        workers=st.lists(
            st.builds(
                RetiredWorker,
                id=st.sampled_from(IDS),
                kind=st.just("log"),
                node=st.sampled_from(NAMES),
                address=st.sampled_from(ADDRS),
                epoch=st.integers(0, 2),
            ),
            max_size=3,
        ),
    ),
    st.builds(ForgetRetired, epoch=st.integers(0, 2), ids=st.lists(st.sampled_from(IDS))),
)
command_entry_st = st.builds(
    lambda c, cid, seq: enc(c, cid, seq),
    commands_st,
    st.sampled_from([0, 0, 0, 1, 2, 3, 3, -1]),
    st.integers(0, 4),
)
# Commands three times as often as garbage or Raft no-op entries.
entry_st = st.sampled_from(["command"] * 6 + ["garbage", "noop"]).flatmap(
    lambda kind: {
        "command": command_entry_st,
        "garbage": st.binary(max_size=12),
        "noop": st.none(),
    }[kind]
)


def feed(state: CoordinatorState, entries: list[bytes | None], start: int) -> list[object]:
    results: list[object] = []
    for offset, data in enumerate(entries):
        index = start + offset
        if data is None:
            state.apply_noop(index)
            results.append(None)
        else:
            results.append(state.apply(index, data))
    return results


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entry_st, max_size=40), st.data())
def test_replicas_agree_with_and_without_a_snapshot(
    entries: list[bytes | None], data: st.DataObject
) -> None:
    one = CoordinatorState(session_capacity=2)
    two = CoordinatorState(session_capacity=2)
    assert feed(one, entries, 1) == feed(two, entries, 1)
    assert one.digest() == two.digest()

    cut = data.draw(st.integers(0, len(entries)), label="snapshot at")
    three = CoordinatorState(session_capacity=2)
    head = feed(three, entries[:cut], 1)
    three = CoordinatorState.restore(three.snapshot())
    tail = feed(three, entries[cut:], cut + 1)
    assert head + tail == feed(CoordinatorState(session_capacity=2), entries, 1)
    assert three.digest() == one.digest()
    assert three == one


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entry_st, max_size=40), st.data())
def test_a_compaction_snapshot_restores_the_state_and_its_order(
    entries: list[bytes | None], data: st.DataObject
) -> None:
    """A compaction's snapshot (the directory unsorted, as this state built it)
    restores the same state, canonically; and a replica restored from it goes
    on producing the bytes of one that applied every entry itself."""
    one = CoordinatorState(session_capacity=2)
    feed(one, entries, 1)
    cut = data.draw(st.integers(0, len(entries)), label="snapshot at")
    two = CoordinatorState(session_capacity=2)
    feed(two, entries[:cut], 1)
    two = CoordinatorState.restore(two.snapshot(canonical=False))
    feed(two, entries[cut:], cut + 1)
    assert two.digest() == one.digest()
    assert two.snapshot(canonical=False) == one.snapshot(canonical=False)


# --------------------------------------------------------------------- api


def test_api_bodies_round_trip_and_decode_strictly() -> None:
    requests: list[protocol.Request] = [
        protocol.Ping(),
        protocol.NodeStatus(),
        protocol.ListServices(stale=True),
        protocol.Register("a", "log", "h:1"),
        protocol.Deregister("a", 1, 2),
        protocol.RegisterNodeRequest("n1", "h:1", ["log"], [svc("a")], 1, 3),
        protocol.AddCoordinator(4, "c:1", 1, 4),
        protocol.RemoveCoordinator(4, 1, 5),
    ]
    for request in requests:
        assert protocol.decode_request(protocol.encode(request)) == request
    responses: list[protocol.Response] = [
        protocol.PingReply(1, 3, 2, 1, "c:1", "ready"),
        protocol.NodeStatusReply(
            1, "c:1", "leader", 3, 9, 9, 1, 2, "ready", 42, 5, {"state": "running"}
        ),
        protocol.ServicesReply(9, [protocol.ServiceRecord("a", "log", "n1", "h:1", 5)]),
        protocol.WriteOk(9, None),
        protocol.NotLeader(2, "c:2"),
        protocol.Rejected("no"),
        protocol.Unavailable("no quorum"),
    ]
    for response in responses:
        assert protocol.decode_response(protocol.encode(response)) == response
    with pytest.raises(WireError):
        protocol.decode_request(protocol.encode(protocol.WriteOk(1, 2)))
    with pytest.raises(WireError):
        protocol.decode_request(b"\xc1")


def test_write_requests_become_proposals_the_state_applies() -> None:
    f = Feeder()
    p = write_proposal(protocol.Register("a", "log", "h:1", client_id=7, seq=1), 55, "me")
    reply = write_reply(f.raw(encode_proposal(p)))
    assert reply == protocol.WriteOk(1, 1)
    assert f.state.service("a") == protocol.ServiceRecord("a", "log", "me", "h:1", 55)
    p = write_proposal(protocol.AddCoordinator(2, "bad", client_id=7, seq=2), 56, "me")
    reply = write_reply(f.raw(encode_proposal(p)))
    assert isinstance(reply, protocol.Rejected) and "coordinator 2 address" in reply.reason
    for request in (
        protocol.RegisterNodeRequest("n1", "h:1", [], [svc("b")], 7, 3),
        protocol.Deregister("a", 7, 4),
        protocol.AddCoordinator(2, "c:2", 7, 5),
        protocol.RemoveCoordinator(2, 7, 6),
        protocol.UpdateConfigRequest({"storage_replacement_s": 5}, 7, 7),
    ):
        assert isinstance(f.raw(encode_proposal(write_proposal(request, 57, "me"))), Applied)
    assert [r.id for r in f.state.services()] == ["b"] and not f.state.coordinators
    assert f.state.config.storage_replacement_s == 5


def test_a_snapshot_holding_the_state_of_another_index_is_refused() -> None:
    """A snapshot labelled S must hold the state at S: applying b+1..S would
    otherwise be skipped on that replica, silently."""
    state = CoordinatorState()
    for index in range(1, 6):
        state.apply_noop(index)
    mislabelled = Snapshot(9, 1, [1, 2, 3], state.snapshot())
    with pytest.raises(SnapshotError, match="labelled index 9 holds the state at index 5"):
        Coordinator._checked_restore(mislabelled)
    right = Snapshot(5, 1, [1, 2, 3], state.snapshot())
    assert Coordinator._checked_restore(right).digest() == state.digest()


_FIELD = st.one_of(
    st.text(max_size=8),
    st.text(min_size=MAX_NAME_LEN - 1, max_size=MAX_NAME_LEN + 1),
    st.sampled_from(["log", "n1", "svc-1", " ", "\u2028", "\x1c"]),
)
_ADDRESS = st.one_of(
    st.text(max_size=12),
    st.builds(
        lambda host, port: f"{host}:{port}",
        st.sampled_from(["h", "127.0.0.1", "[::1]", "::1", "a b", "h\u3000", "", "[]"]),
        st.sampled_from(["1", "65535", "0", "65536", "+1", " 1", "\u0661", "00080", "123456", ""]),
    ),
)


@settings(max_examples=500, deadline=None)
@given(id_=_FIELD, kind=_FIELD, node=_FIELD, address=_ADDRESS)
def test_the_fast_check_of_a_service_agrees_with_the_one_that_names_the_problem(
    id_: str, kind: str, node: str, address: str
) -> None:
    # Every node checks every service of every write it applies: valid ones are
    # accepted without formatting a reason; the verdict must stay the same.
    from bedrock_cp.coordinator.limits import check_address, check_name
    from bedrock_cp.coordinator.state import _check_placed

    full = (
        check_name("service id", id_)
        or check_name(f"service {id_!r} kind", kind)
        or check_name(f"service {id_!r} node", node)
        or check_address(f"service {id_!r} address", address)
    )
    assert _check_placed("service", id_, kind, node, address) == full
