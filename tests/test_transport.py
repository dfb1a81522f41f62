"""Transport over real sockets on 127.0.0.1: Raft links, handshake, hostile input, RPC.

Every test runs under uvloop and under the stock asyncio loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import struct
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec
import pytest
import uvloop

from bedrock_cp.auth import AcceptorAuth
from bedrock_cp.auth.credentials import NO_AUTH
from bedrock_cp.transport import (
    ConnectionLost,
    ConnInfo,
    HandshakeRefused,
    RemoteError,
    RpcClient,
    Transport,
)
from bedrock_cp.wire import (
    PROTOCOL_VERSION,
    Frame,
    Hello,
    RaftBatch,
    Refused,
    Request,
    Response,
    TransportError,
    Welcome,
    decode,
    decode_body,
    encode,
    encode_body,
)
from bedrock_cp.wire._framing import FrameDecoder

CLUSTER = "prod"
Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["uvloop", "asyncio"])
def run(request: pytest.FixtureRequest) -> Run:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run(coro: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(asyncio.wait_for(coro, 10))

    return run


async def until(cond: Callable[[], bool], within: float = 3.0) -> None:
    """Wait for ``cond`` with a deadline (a condition, not a fixed sleep)."""
    async with asyncio.timeout(within):
        # Polling: the conditions are on state the transport has no event for.
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


async def echo(request: Request, info: ConnInfo) -> msgspec.Raw:
    return encode_body(["echo", info.kind, decode_body(request.body, object)])


class Node:
    """A Transport with recording callbacks."""

    def __init__(
        self,
        node_id: int,
        peers: dict[int, str],
        port: int = 0,
        on_request: Callable[[Request, ConnInfo], Awaitable[msgspec.Raw]] = echo,
        **kw: Any,
    ) -> None:
        self.raft: list[tuple[int, list[bytes]]] = []
        self.lost: list[int] = []
        self.t = Transport(
            node_id=node_id,
            cluster_id=CLUSTER,
            listen_host="127.0.0.1",
            listen_port=port,
            peers=peers,
            on_raft=lambda p, m: self.raft.append((p, m)),
            on_peer_lost=self.lost.append,
            on_request=on_request,
            rng=random.Random(node_id),
            **{
                "auth": AcceptorAuth("none", CLUSTER),
                "connector_auth": NO_AUTH,
                "reconnect_base": 0.005,
                "reconnect_cap": 0.05,
                **kw,
            },
        )

    def messages_from(self, peer: int) -> list[bytes]:
        return [m for p, batch in self.raft if p == peer for m in batch]


async def pair() -> tuple[Node, Node]:
    """Two nodes linked both ways (1 knows 2's port only after 2 started)."""
    a = Node(1, {})
    await a.t.start()
    b = Node(2, {1: f"127.0.0.1:{a.t.port}"})
    await b.t.start()
    a.t.set_peers({2: f"127.0.0.1:{b.t.port}"})
    await until(lambda: a.t.connected(2) and b.t.connected(1))
    return a, b


# -- Raft links ----------------------------------------------------------------


def test_raft_batches_flow_both_ways(run: Run) -> None:
    async def main() -> None:
        a, b = await pair()
        a.t.send_raft(2, b"to-b")
        b.t.send_raft(1, b"to-a")
        await until(lambda: bool(a.raft and b.raft))
        assert b.raft == [(1, [b"to-b"])]
        assert a.raft == [(2, [b"to-a"])]
        await a.t.stop()
        # For the other side we went away, reported once both connections closed.
        await until(lambda: b.lost == [1])
        await b.t.stop()
        assert a.lost == []  # our own stop is not a failure

    run(main())


def test_sends_in_one_iteration_leave_as_one_batch_in_order(run: Run) -> None:
    async def main() -> None:
        a, b = await pair()
        msgs = [b"m%03d" % i for i in range(100)]
        for m in msgs:
            a.t.send_raft(2, m)
        await until(lambda: len(b.messages_from(1)) == 100)
        assert b.raft == [(1, msgs)]
        assert a.t.stats["raft.batches_sent"] == 1
        # Across iterations: separate batches, order kept.
        for m in msgs[:3]:
            a.t.send_raft(2, m)
            await asyncio.sleep(0)
        await until(lambda: len(b.messages_from(1)) == 103)
        assert b.messages_from(1)[100:] == msgs[:3]
        await a.t.stop()
        await b.t.stop()

    run(main())


def test_sends_without_a_link_are_dropped_and_counted(run: Run) -> None:
    async def main() -> None:
        a = Node(1, {2: "127.0.0.1:1"})  # nobody listens on port 1
        await a.t.start()
        a.t.send_raft(2, b"x")
        a.t.send_raft(9, b"x")
        assert a.t.stats["raft_dropped.link_down"] == 1
        assert a.t.stats["raft_dropped.unknown_peer"] == 1
        await until(lambda: a.t.stats["links.connect_failed"] >= 3)  # keeps retrying
        await a.t.stop()

    run(main())


@pytest.mark.parametrize("how", ["stop", "reset"])
def test_peer_loss_is_reported_once_and_the_link_comes_back(run: Run, how: str) -> None:
    async def main() -> None:
        a, b = await pair()
        port_b = b.t.port
        if how == "stop":
            await b.t.stop()
        else:
            b.t.abort()  # RST on every socket, as when the process is killed
        await until(lambda: a.lost == [2], within=1.0)
        key = "closed.eof" if how == "stop" else "closed.reset"
        assert a.t.stats[key] >= 1, a.t.stats
        assert b.lost == []  # the side that closed does not report its own close
        await until(lambda: not a.t.connected(2))
        a.t.send_raft(2, b"while-down")
        assert a.t.stats["raft_dropped.link_down"] == 1

        b2 = Node(2, {1: f"127.0.0.1:{a.t.port}"}, port=port_b)
        await b2.t.start()
        await until(lambda: a.t.connected(2) and b2.t.connected(1))
        a.t.send_raft(2, b"again")
        b2.t.send_raft(1, b"back")
        await until(lambda: b2.raft == [(1, [b"again"])] and (2, [b"back"]) in a.raft)
        await asyncio.sleep(0.05)
        assert a.lost == [2]  # one report for the one failure (both connections broke)
        await a.t.stop()
        await b2.t.stop()

    run(main())


def test_a_peer_that_comes_back_is_linked_at_once_whatever_the_backoff(run: Run) -> None:
    """A restarted peer dials us first (its links are fresh): that is news that it
    is back, so our link to it reconnects now, not at the end of a backoff that
    grew while it was down (up to the cap: a second without a majority link)."""

    async def main() -> None:
        a = Node(1, {}, reconnect_base=5.0, reconnect_cap=5.0)  # every retry waits 2.5-5 s
        await a.t.start()
        b = Node(2, {1: f"127.0.0.1:{a.t.port}"})
        await b.t.start()
        port_b = b.t.port
        a.t.set_peers({2: f"127.0.0.1:{port_b}"})
        await until(lambda: a.t.connected(2) and b.t.connected(1))
        b.t.abort()
        await until(lambda: not a.t.connected(2))
        b2 = Node(2, {1: f"127.0.0.1:{a.t.port}"}, port=port_b)
        await b2.t.start()
        await until(lambda: b2.t.connected(1))
        await until(lambda: a.t.connected(2), within=1.0)
        await a.t.stop()
        await b2.t.stop()

    run(main())


def test_set_peers_links_new_peers_and_closes_removed_ones_quietly(run: Run) -> None:
    async def main() -> None:
        a, b = await pair()
        c = Node(3, {1: f"127.0.0.1:{a.t.port}"})
        await c.t.start()
        await until(lambda: c.t.stats["links.connect_failed"] >= 1)  # 1 does not know 3 yet
        assert a.t.stats["closed.unknown_peer"] >= 1
        a.t.set_peers({2: f"127.0.0.1:{b.t.port}", 3: f"127.0.0.1:{c.t.port}"})
        await until(lambda: a.t.connected(3) and c.t.connected(1))
        a.t.set_peers({3: f"127.0.0.1:{c.t.port}"})
        await until(lambda: not a.t.connected(2) and b.lost == [1])
        await asyncio.sleep(0.05)
        assert a.lost == []  # we removed 2: not a failure
        a.t.send_raft(2, b"x")
        assert a.t.stats["raft_dropped.unknown_peer"] == 1
        for n in (a, b, c):
            await n.t.stop()

    run(main())


def test_a_peer_that_does_not_read_cannot_grow_our_buffers(run: Run) -> None:
    async def main() -> None:
        # A fake peer: completes the handshake, then never reads again.
        stalled: list[asyncio.StreamWriter] = []

        async def fake_peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            (n,) = struct.unpack("<I", await r.readexactly(4))
            await r.readexactly(n)  # the Hello
            w.write(encode(Welcome(PROTOCOL_VERSION, CLUSTER, 2)))
            stalled.append(w)

        server = await asyncio.start_server(fake_peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        limit = 256 * 1024
        a = Node(1, {2: f"127.0.0.1:{port}"}, write_buffer_limit=limit)
        await a.t.start()
        await until(lambda: a.t.connected(2))
        chunk = b"z" * 32 * 1024
        for _ in range(400):  # 12.5 MiB offered
            a.t.send_raft(2, chunk)
            await asyncio.sleep(0)
            if a.t.stats["raft_dropped.backpressure"] > 50:
                break
        assert a.t.stats["raft_dropped.backpressure"] > 50
        sent = a.t.stats["raft.messages_sent"] * len(chunk)
        assert sent < limit + 8 * 1024 * 1024  # bounded by the limit plus kernel buffers
        await a.t.stop()
        server.close()
        for w in stalled:
            w.close()

    run(main())


# -- raw sockets: handshake and hostile input ----------------------------------


async def serving_node(**kw: Any) -> Node:
    n = Node(1, {2: "127.0.0.1:1"}, **kw)
    await n.t.start()
    return n


async def read_all(reader: asyncio.StreamReader) -> list[Frame]:
    """Every frame until EOF (the server closed); fails if it never closes."""
    data = await asyncio.wait_for(reader.read(), 2.0)
    return [decode(body) for body in FrameDecoder().feed(data)]


async def still_serves(n: Node) -> None:
    client = await RpcClient.connect(f"127.0.0.1:{n.t.port}", CLUSTER, auth=NO_AUTH)
    assert decode_body(await client.call(encode_body("hi"), 1.0), object) == [
        "echo",
        "client",
        "hi",
    ]
    await client.close()


def test_wrong_cluster_id_is_refused_with_the_reason(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        n = await serving_node()
        with pytest.raises(HandshakeRefused) as err:
            await RpcClient.connect(f"127.0.0.1:{n.t.port}", "other", auth=NO_AUTH)
        assert err.value.reason == "cluster id 'other' != 'prod'"
        assert n.t.stats["closed.wrong_cluster"] == 1
        await still_serves(n)
        await n.t.stop()

    with caplog.at_level(logging.WARNING, logger="bedrock_cp.transport"):
        run(main())
    assert any(
        r.getMessage().startswith("refused client 127.0.0.1:")
        and r.getMessage().endswith(": cluster id 'other' != 'prod'")
        for r in caplog.records
    )


@pytest.mark.parametrize(
    ("first", "code", "reason"),
    [
        (Hello(PROTOCOL_VERSION + 1, CLUSTER, 0, "client"), "bad_protocol", "protocol version 3"),
        (Hello(PROTOCOL_VERSION, "other", 2, "peer"), "wrong_cluster", "cluster id 'other'"),
        (Hello(PROTOCOL_VERSION, CLUSTER, 9, "peer"), "unknown_peer", "node id 9 is not a known"),
        (Hello(PROTOCOL_VERSION, CLUSTER, 1, "peer"), "own_node_id", "node id 1 is this node's"),
        (Hello(PROTOCOL_VERSION, "", 2, "peer"), "wrong_cluster", "cluster id ''"),
        (Request(1, 100, encode_body("x")), "not_hello", "expected Hello, got Request"),
        (RaftBatch([b"x"]), "not_hello", "expected Hello, got RaftBatch"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_bad_first_frames_are_refused_and_closed(
    run: Run, caplog: pytest.LogCaptureFixture, first: Frame, code: str, reason: str
) -> None:
    async def main() -> None:
        n = await serving_node()
        reader, writer = await asyncio.open_connection("127.0.0.1", n.t.port)
        writer.write(encode(first))
        frames = await read_all(reader)  # returns only once the server closed
        assert len(frames) == 1 and isinstance(frames[0], Refused)
        assert reason in frames[0].reason
        assert n.t.stats[f"closed.{code}"] == 1
        assert n.raft == []
        writer.close()
        await still_serves(n)
        await n.t.stop()

    with caplog.at_level(logging.WARNING, logger="bedrock_cp.transport"):
        run(main())
    assert any(
        r.getMessage().startswith("refused ") and reason in r.getMessage() for r in caplog.records
    )


def test_no_hello_within_the_deadline_is_refused_and_closed(run: Run) -> None:
    async def main() -> None:
        n = await serving_node(handshake_timeout=0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", n.t.port)
        writer.write(encode(Hello(PROTOCOL_VERSION, CLUSTER, 0, "client"))[:5])  # a slowloris
        t0 = asyncio.get_running_loop().time()
        frames = await read_all(reader)
        assert asyncio.get_running_loop().time() - t0 < 1.0
        assert frames == [Refused("no handshake within 0.1s")]
        assert n.t.stats["closed.handshake_timeout"] == 1
        writer.close()
        await still_serves(n)
        await n.t.stop()

    run(main())


async def raw_handshake(
    n: Node, kind: str = "client", node_id: int = 0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", n.t.port)
    writer.write(encode(Hello(PROTOCOL_VERSION, CLUSTER, node_id, kind)))  # type: ignore[arg-type]
    welcome_size = len(encode(Welcome(PROTOCOL_VERSION, CLUSTER, 1)))
    (body,) = FrameDecoder().feed(await reader.readexactly(welcome_size))
    assert decode(body) == Welcome(PROTOCOL_VERSION, CLUSTER, 1)
    return reader, writer


@pytest.mark.parametrize(
    ("kind", "payload", "code", "reason"),
    [
        ("none", random.Random(7).randbytes(512), "frame_too_large", "exceeds the"),
        (
            "none",
            struct.pack("<I", 20) + random.Random(8).randbytes(20),
            "undecodable",
            "undecodable",
        ),
        ("none", struct.pack("<I", 2**31) + b"abc", "frame_too_large", "2147483648 bytes"),
        ("client", struct.pack("<I", 2) + b"\x92\xa3", "undecodable", "truncated"),
        ("client", struct.pack("<I", 2**31), "frame_too_large", "exceeds the 16777216"),
        (
            "client",
            encode(Response(1, encode_body(1))),
            "unexpected_frame",
            "Response frame from a client",
        ),
        ("client", encode(RaftBatch([b"x"])), "unexpected_frame", "RaftBatch frame from a client"),
        (
            "peer",
            encode(Request(1, 100, encode_body(1))),
            "unexpected_frame",
            "Request frame from a peer",
        ),
        (
            "peer",
            encode(Hello(1, CLUSTER, 2, "peer")),
            "unexpected_frame",
            "Hello frame from a peer",
        ),
        ("peer", encode(RaftBatch([b"ok"]))[:-1], "truncated", "EOF inside a frame"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "",
)
def test_hostile_input_closes_that_connection_only(
    run: Run, caplog: pytest.LogCaptureFixture, kind: str, payload: bytes, code: str, reason: str
) -> None:
    async def main() -> None:
        n = await serving_node()
        bystander = await RpcClient.connect(f"127.0.0.1:{n.t.port}", CLUSTER, auth=NO_AUTH)
        if kind == "none":
            reader, writer = await asyncio.open_connection("127.0.0.1", n.t.port)
        else:
            reader, writer = await raw_handshake(n, kind, 2 if kind == "peer" else 0)
        writer.write(payload)
        writer.write_eof()  # a truncated frame then EOF, where the payload is short
        frames = await read_all(reader)  # returns only once the server closed
        assert all(isinstance(f, Refused) for f in frames)
        assert n.t.stats[f"closed.{code}"] == 1
        assert n.raft == []
        writer.close()
        # The node and its other connections carry on.
        assert not bystander.closed
        assert decode_body(await bystander.call(encode_body(1), 1.0), object) == [
            "echo",
            "client",
            1,
        ]
        await bystander.close()
        await still_serves(n)
        await n.t.stop()

    with caplog.at_level(logging.WARNING, logger="bedrock_cp.transport"):
        run(main())
    assert any(reason in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_a_peer_batch_after_a_good_handshake_is_delivered(run: Run) -> None:
    # The positive control for the hostile-input cases above.
    async def main() -> None:
        n = await serving_node()
        _, writer = await raw_handshake(n, "peer", 2)
        writer.write(encode(RaftBatch([b"a", b"b"])))
        await until(lambda: n.raft == [(2, [b"a", b"b"])])
        writer.close()
        await n.t.stop()

    run(main())


# -- RPC -----------------------------------------------------------------------


def test_100_concurrent_calls_complete_out_of_order_each_with_its_answer(run: Run) -> None:
    async def slow_echo(request: Request, info: ConnInfo) -> msgspec.Raw:
        i = decode_body(request.body, int)
        await asyncio.sleep((100 - i) * 0.0005)  # later requests answer first
        return encode_body(i * 2)

    async def main() -> None:
        n = await serving_node(on_request=slow_echo)
        client = await RpcClient.connect(f"127.0.0.1:{n.t.port}", None, auth=NO_AUTH)
        assert (client.remote_node_id, client.remote_cluster_id) == (1, CLUSTER)
        done: list[int] = []

        async def one(i: int) -> int:
            r = decode_body(await client.call(encode_body(i), 2.0), int)
            done.append(i)
            return r

        results = await asyncio.gather(*(one(i) for i in range(100)))
        assert results == [i * 2 for i in range(100)]
        assert done != sorted(done)  # really out of order
        await client.close()
        await n.t.stop()

    run(main())


def test_handler_timeout_and_exception_become_transport_errors(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(request: Request, info: ConnInfo) -> msgspec.Raw:
        what = decode_body(request.body, str)
        if what == "hang":
            await asyncio.sleep(10)
        if what == "own-timeout":
            raise TimeoutError("the handler's own")
        raise RuntimeError("boom")

    async def main() -> None:
        n = await serving_node(on_request=handler)
        # The server's deadline, seen on a raw connection (the client's own timer
        # would race it otherwise).
        reader, writer = await raw_handshake(n)
        writer.write(encode(Request(5, 50, encode_body("hang"))))
        frame = decode(FrameDecoder().feed(await asyncio.wait_for(reader.read(100), 2.0))[0])
        assert isinstance(frame, Response) and frame.id == 5
        err = decode_body(frame.body, TransportError)
        assert err == TransportError("timeout", "no answer within 50 ms")
        assert n.t.stats["requests.timeout"] == 1
        writer.close()

        client = await RpcClient.connect(f"127.0.0.1:{n.t.port}", CLUSTER, auth=NO_AUTH)
        for what in ("boom", "own-timeout"):
            with pytest.raises(RemoteError) as rerr:
                await client.call(encode_body(what), 1.0)
            assert rerr.value.code == "internal"
        assert n.t.stats["requests.internal"] == 2
        assert not client.closed  # a failed request does not cost the connection
        await client.close()
        await n.t.stop()

    with caplog.at_level(logging.ERROR, logger="bedrock_cp.transport"):
        run(main())
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)


def test_too_many_requests_in_flight_are_answered_overloaded(run: Run) -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def blocked(request: Request, info: ConnInfo) -> msgspec.Raw:
            await release.wait()
            return encode_body("ok")

        n = await serving_node(on_request=blocked, max_inflight=2)
        client = await RpcClient.connect(f"127.0.0.1:{n.t.port}", CLUSTER, auth=NO_AUTH)
        first = [asyncio.ensure_future(client.call(encode_body(i), 2.0)) for i in range(2)]
        await until(lambda: n.t.stats["accepted"] == 1 and len(client._proto.pending) == 2)
        await asyncio.sleep(0.01)
        with pytest.raises(RemoteError, match="overloaded"):
            await client.call(encode_body(3), 2.0)
        release.set()
        assert [decode_body(r, str) for r in await asyncio.gather(*first)] == ["ok", "ok"]
        await client.close()
        await n.t.stop()

    run(main())


def test_client_deadline_raises_timeout_error(run: Run) -> None:
    async def main() -> None:
        # A server that completes the handshake and then ignores every request.
        async def mute(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.read(100)
            w.write(encode(Welcome(PROTOCOL_VERSION, CLUSTER, 7)))
            await r.read()
            w.close()

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = await RpcClient.connect(f"127.0.0.1:{port}", CLUSTER, auth=NO_AUTH)
        assert client.remote_node_id == 7
        with pytest.raises(TimeoutError):
            await client.call(encode_body("x"), 0.05)
        assert client._proto.pending == {}  # nothing left behind
        await client.close()
        server.close()

    run(main())


def test_connection_loss_fails_every_pending_call(run: Run) -> None:
    async def main() -> None:
        arrived = []

        async def never(request: Request, info: ConnInfo) -> msgspec.Raw:
            arrived.append(request.id)
            await asyncio.sleep(10)
            raise AssertionError("unreachable")

        n = await serving_node(on_request=never)
        client = await RpcClient.connect(f"127.0.0.1:{n.t.port}", CLUSTER, auth=NO_AUTH)
        calls = [asyncio.ensure_future(client.call(encode_body(i), 5.0)) for i in range(3)]
        await until(lambda: len(arrived) == 3)  # every request reached the server
        n.t.abort()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, ConnectionLost) for r in results), results
        assert client.closed
        with pytest.raises(ConnectionLost):
            await client.call(encode_body(0), 1.0)
        await client.close()

    run(main())


def test_connect_to_a_closed_port_fails_with_oserror(run: Run) -> None:
    async def main() -> None:
        with pytest.raises(OSError):
            await RpcClient.connect("127.0.0.1:1", CLUSTER, auth=NO_AUTH, timeout=1.0)

    run(main())


class _ReturnsLate(asyncio.SelectorEventLoop):
    """A stock loop whose ``create_connection`` makes the connection but does
    not return until cancelled, then closes it, as uvloop does when a connect
    is cancelled between the end of the TLS handshake (the protocol's
    ``connection_made``) and ``create_connection`` returning: a window of one
    loop turn there, held open here. ``made`` lists the protocols."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[Any] = []

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        transport, protocol = await super().create_connection(*args, **kwargs)
        self.made.append(protocol)
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            transport.close()
        raise AssertionError("unreachable")


def test_a_connect_given_up_after_the_connection_was_made_leaves_nothing_unretrieved() -> None:
    """A connect that gives up (cancelled, or at its deadline) while its
    connection is made but not yet handed back closes that connection; the
    handshake's outcome (ConnectionLost) is nobody's to hear. Before, it stayed
    in a future no one awaited: "Future exception was never retrieved" in the
    log of a client under load, whose hedges give up on connects."""
    unheard: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, _ReturnsLate)
        loop.set_exception_handler(lambda _loop, ctx: unheard.append(str(ctx.get("message"))))

        async def mute(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.read()  # accepts, never answers the Hello
            w.close()

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connect = asyncio.ensure_future(
            RpcClient.connect(f"127.0.0.1:{port}", CLUSTER, auth=NO_AUTH, timeout=5.0)
        )
        await until(lambda: len(loop.made) == 1)  # made, not yet returned
        connect.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connect
        with pytest.raises(TimeoutError):  # the same, at the connect's own deadline
            await RpcClient.connect(f"127.0.0.1:{port}", CLUSTER, auth=NO_AUTH, timeout=0.05)
        assert len(loop.made) == 2
        await until(lambda: all(p.closed.done() for p in loop.made))  # connection_lost ran
        loop.made.clear()  # what is never retrieved is reported as it is collected
        gc.collect()
        server.close()

    with asyncio.Runner(loop_factory=_ReturnsLate) as runner:
        runner.run(asyncio.wait_for(main(), 10))
    assert unheard == []
