"""The fault-injecting proxy on its own, in front of a small server: every
fault does what it says, in the direction it says, and heals."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from .faultproxy import FaultProxy, Link, fault_proxy


class Server:
    """Accepts connections; answers b"hello" at once, then echoes; records what it got."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(b"hello")
                while data := conn.recv(65536):
                    self.received.append(data)
                    conn.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


@pytest.fixture
def link(server: Server) -> Iterator[Link]:
    with fault_proxy() as proxy:
        yield proxy.link(("127.0.0.1", server.port))


async def _open(link: Link) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", link.port)


async def _read(reader: asyncio.StreamReader, n: int, timeout: float = 0.3) -> bytes:  # noqa: ASYNC109
    try:
        return await asyncio.wait_for(reader.readexactly(n), timeout)
    except TimeoutError:
        return b""


async def test_pass_forwards_both_ways(link: Link) -> None:
    reader, writer = await _open(link)
    assert await _read(reader, 5, 2.0) == b"hello"
    writer.write(b"ping")
    assert await _read(reader, 4, 2.0) == b"ping"
    writer.close()
    assert link.bytes_forwarded >= 9


async def test_forward_blackhole_is_one_way(link: Link) -> None:
    link.set_mode("blackhole", "forward")
    reader, writer = await _open(link)
    assert await _read(reader, 5, 2.0) == b"hello", "the answers still come back"
    writer.write(b"lost")
    assert await _read(reader, 4) == b"", "what the dialer sends is held"
    assert link.mode == "blackhole"
    link.set_mode("pass")
    writer.write(b"back")
    assert await _read(reader, 4, 2.0) == b"back"
    writer.close()


async def test_backward_blackhole_holds_only_the_answers(link: Link, server: Server) -> None:
    link.set_mode("blackhole", "backward")
    reader, writer = await _open(link)
    writer.write(b"seen")
    for _ in range(500):  # bounded: 5 s
        if server.received:
            break
        await asyncio.sleep(0.01)
    assert server.received == [b"seen"], "what the dialer sends arrives"
    assert await _read(reader, 5) == b"", "the answers are held"
    writer.close()


async def test_cut_refuses_and_heal_restores(link: Link) -> None:
    reader, writer = await _open(link)
    assert await _read(reader, 5, 2.0) == b"hello"
    link.set_mode("cut")
    assert await reader.read() == b"", "an open connection is reset"
    reader, writer = await _open(link)
    assert await reader.read() == b"", "a new one is refused"
    link.heal()
    reader, writer = await _open(link)
    assert await _read(reader, 5, 2.0) == b"hello"
    writer.close()


async def test_drop_resets_connections(link: Link) -> None:
    link.set_drop(1.0, seed=1)
    reader, writer = await _open(link)
    assert await reader.read() == b"", "the first chunk resets the connection"
    assert link.resets == 1
    link.set_drop(0.0)
    reader, writer = await _open(link)
    assert await _read(reader, 5, 2.0) == b"hello"
    writer.close()


async def test_delay_is_added_in_order(link: Link) -> None:
    link.set_delay(0.02, 0.04)
    reader, writer = await _open(link)
    assert await _read(reader, 5, 2.0) == b"hello"
    for i in range(5):
        writer.write(b"%d" % i)
        await writer.drain()
    got = await _read(reader, 5, 5.0)
    assert got == b"01234", "delayed chunks keep their order"
    writer.close()


def test_proxy_closes_cleanly() -> None:
    proxy = FaultProxy()
    proxy.link(("127.0.0.1", 9))
    proxy.close()
