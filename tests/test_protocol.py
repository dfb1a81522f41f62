"""The protocol package: one union per direction, stable tags, declared senders, the caller.

Tags are on the wire and in stored data (layouts, sessions): the table below pins
every one of them, so renaming a tag fails here first.
"""

from __future__ import annotations

import inspect
import re
from typing import get_args

import msgspec
import pytest

from bedrock_cp import protocol
from bedrock_cp.auth import AcceptorAuth
from bedrock_cp.auth.credentials import NO_AUTH
from bedrock_cp.protocol import Body, Caller, Sender, WorkerRef
from bedrock_cp.transport import ConnInfo, Transport
from bedrock_cp.wire import Request as RequestFrame
from bedrock_cp.wire import WireError, WireProblem

REQUEST_TAGS = {
    "Ping": "ping",
    "NodeStatus": "status",
    "ListServices": "list",
    "ListNodes": "list_nodes",
    "GetConfig": "get_config",
    "WatchLayout": "watch_layout",
    "Register": "reg",
    "Deregister": "dereg",
    "WriteBatch": "writes",
    "RegisterNodeRequest": "reg_node",
    "AddCoordinator": "add_coord",
    "RemoveCoordinator": "rm_coord",
    "UpdateConfigRequest": "update_config",
    "StoreLayoutRequest": "store_layout",
    "GetLayout": "gw_layout",
    "CreateWorker": "fm_create",
    "RemoveWorker": "fm_remove",
    "StartRole": "fm_start_role",
    "StopRole": "fm_stop_role",
    "ListWorkers": "fm_list",
    "Health": "dp_health",
    "LogPush": "dp_push",
    "LogPull": "dp_pull",
    "LogLock": "dp_lock",
    "LogRecover": "dp_recover",
    "LogPop": "dp_pop",
    "LogCommitted": "dp_log_committed",
    "ConfirmEpoch": "dp_confirm_epoch",
    "StorageGet": "dp_get",
    "StorageGetRange": "dp_get_range",
    "StorageStatus": "dp_storage_status",
    "StorageLock": "dp_storage_lock",
    "StorageFill": "dp_storage_fill",
    "StorageSnapshot": "dp_storage_snapshot",
    "GetReadVersion": "dp_grv",
    "GetCommitVersion": "dp_gcv",
    "ReportCommitted": "dp_committed_upto",
    "Resolve": "dp_resolve",
    "Commit": "dp_commit",
    "UnlockProxy": "dp_unlock",
}
RESPONSE_TAGS = {
    "PingReply": "pong",
    "NodeStatusReply": "status_reply",
    "ServicesReply": "services",
    "NodesReply": "nodes",
    "ConfigReply": "config",
    "LayoutReply": "layout",
    "WriteOk": "ok",
    "WriteResults": "oks",
    "NotLeader": "not_leader",
    "Rejected": "rejected",
    "Unavailable": "unavailable",
    "LogPushed": "dp_pushed",
    "LogBatches": "dp_batches",
    "LogLocked": "dp_locked",
    "LogRecovered": "dp_recovered",
    "Value": "dp_value",
    "Values": "dp_values",
    "StorageState": "dp_storage_state",
    "SnapshotChunk": "dp_snapshot_chunk",
    "ReadVersion": "dp_read_version",
    "CommitVersion": "dp_commit_version",
    "Resolved": "dp_resolved",
    "Committed": "dp_ok",
    "NotCommitted": "dp_conflict",
    "Workers": "fm_workers",
    "WorkerCreated": "fm_created",
    "Done": "dp_done",
    "NewerEpoch": "dp_newer_epoch",
    "Locked": "dp_locked_out",
    "Failed": "dp_failed",
    "Unauthorized": "unauthorized",
}


def tags(union: object) -> list[tuple[str, object]]:
    return [(t.__name__, t.__struct_config__.tag) for t in get_args(union)]


@pytest.mark.parametrize(
    ("union", "expected"),
    [(protocol.Request, REQUEST_TAGS), (protocol.Response, RESPONSE_TAGS)],
    ids=["request", "response"],
)
def test_every_tag_is_unique_and_unchanged(union: object, expected: dict[str, str]) -> None:
    found = tags(union)
    values = [tag for _, tag in found]
    assert len(set(values)) == len(values), "a tag is used twice"
    assert dict(found) == expected


def test_tags_are_unique_across_both_directions() -> None:
    # A request decoded as a response (or the reverse) can never be mistaken for one.
    both = [tag for _, tag in tags(protocol.Request) + tags(protocol.Response)]
    assert len(set(both)) == len(both)


def _structs() -> list[type[msgspec.Struct]]:
    out = []
    for name in dir(protocol):
        obj = getattr(protocol, name)
        if inspect.isclass(obj) and issubclass(obj, msgspec.Struct):
            out.append(obj)
    return out


def test_every_body_shares_the_base_options() -> None:
    structs = _structs()
    assert len(structs) > 60
    for cls in structs:
        assert issubclass(cls, Body), cls
        config = cls.__struct_config__
        assert (config.array_like, config.frozen, config.gc) == (True, True, False), cls


def test_every_request_declares_its_sender_and_no_response_does() -> None:
    for t in get_args(protocol.Request):
        assert isinstance(t.__dict__.get("sender"), Sender), f"{t.__name__} declares no sender"
        assert "sender" not in t.__struct_fields__
    for t in get_args(protocol.Response):
        assert not hasattr(t, "sender"), t


def _documented_senders() -> dict[str, Sender]:
    """The table in the protocol package's docstring: ``- ``sender``: Name, Name``."""
    doc = protocol.__doc__ or ""
    table = doc.split("Who may send each request", 1)[1]
    out: dict[str, Sender] = {}
    for sender, names in re.findall(r"^- ``(\w+)``: (.*?)(?=^- |\Z)", table, re.M | re.S):
        for name in re.split(r"[,\s]+", names.strip()):
            assert name not in out, f"{name} is listed twice"
            out[name] = Sender(sender)
    return out


def test_the_sender_table_is_what_the_docs_say() -> None:
    table = {t.__name__: s for t, s in protocol.SENDERS.items()}
    assert set(table) == {t.__name__ for t in get_args(protocol.Request)}
    assert table == _documented_senders()


def test_every_director_request_names_its_epoch() -> None:
    # A later authorization check tells the current epoch's Director by this field.
    for t, sender in protocol.SENDERS.items():
        if sender is Sender.DIRECTOR:
            assert "epoch" in t.__struct_fields__, t


def test_bodies_round_trip_through_the_one_codec() -> None:
    ref = WorkerRef("log-1", "log", "n1", "h:1")
    batch = protocol.CommitBatch(1, 2, [protocol.Mutation(protocol.MutationKind.SET, b"k", b"v")])
    requests: list[protocol.Request] = [
        protocol.Ping(),
        protocol.GetLayout(),
        protocol.LogPush("log-1", 3, batch, 1),
        protocol.LogRecover("log-2", 4, [ref], 1, 2),
        protocol.CreateWorker("log", "log-3", 4),
        protocol.Resolve("r", 4, 1, 2, [protocol.ResolveTransaction(1, [], [])]),
    ]
    for request in requests:
        assert protocol.decode_request(protocol.encode(request)) == request
    responses: list[protocol.Response] = [
        protocol.LayoutReply(0, None, 0),
        protocol.Workers([protocol.WorkerInfo(ref, "running")]),
        protocol.Failed("no_such_worker", "gone"),
        protocol.NotLeader(2, "c:2"),
    ]
    for response in responses:
        assert protocol.decode_response(protocol.encode(response)) == response


@pytest.mark.parametrize(
    ("data", "problem", "path"),
    [
        (protocol.encode(protocol.Ping()), WireProblem.INVALID, "$[0]"),  # a request's tag
        (msgspec.msgpack.encode(["dp_failed", 1, "x"]), WireProblem.INVALID, "$[1]"),
        (b"\x92\xa3", WireProblem.TRUNCATED, None),
        (b"\xc1", WireProblem.MALFORMED, None),
    ],
)
def test_undecodable_bodies_raise_wire_errors(
    data: bytes, problem: WireProblem, path: str | None
) -> None:
    with pytest.raises(WireError) as err:
        protocol.decode_response(data)
    assert (err.value.problem, err.value.part, err.value.path) == (problem, "body", path)


async def _serving(answer: bytes) -> Transport:
    async def on_request(request: RequestFrame, info: ConnInfo) -> msgspec.Raw:
        protocol.decode_request(bytes(request.body))
        return msgspec.Raw(answer)

    node = Transport(
        node_id=1,
        cluster_id="c",
        listen_host="127.0.0.1",
        listen_port=0,
        peers={},
        on_raft=lambda _p, _m: None,
        on_peer_lost=lambda _p: None,
        on_request=on_request,
        auth=AcceptorAuth("none", "c"),
        connector_auth=NO_AUTH,
    )
    await node.start()
    return node


async def test_the_caller_reaches_a_node_by_address_and_a_worker_by_ref() -> None:
    reply = protocol.PingReply(1, 2, 3, 1, "a", "ready")
    node = await _serving(protocol.encode(reply))
    caller = Caller(None, auth=NO_AUTH)
    try:
        address = f"127.0.0.1:{node.port}"
        assert await caller.call(address, protocol.Ping(), 2.0) == reply
        ref = WorkerRef("log-1", "log", "n1", address)
        assert await caller.call(ref, protocol.LogPull("log-1", 0), 2.0) == reply
        assert caller.cluster_id == "c"  # learned from the first node reached
    finally:
        await caller.close()
        await node.stop()


async def test_the_caller_raises_a_wire_error_for_an_undecodable_answer() -> None:
    node = await _serving(msgspec.msgpack.encode(["no_such_tag"]))
    caller = Caller("c", auth=NO_AUTH)
    try:
        with pytest.raises(WireError) as err:
            await caller.call(f"127.0.0.1:{node.port}", protocol.Ping(), 2.0)
        assert err.value.problem is WireProblem.INVALID
    finally:
        await caller.close()
        await node.stop()


def test_a_write_batch_carries_only_writes_of_its_own_sender() -> None:
    """The node authorizes a batch by its sender, then each write's scope."""
    for write in get_args(protocol.BatchedWrite):
        assert protocol.SENDERS[write] is protocol.SENDERS[protocol.WriteBatch], write
