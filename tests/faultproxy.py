"""A fault-injecting TCP proxy for integration tests.

One :class:`Link` forwards one direction of node-to-node traffic (``A -> B``):
node A's configuration names the link's address as B's. Each link can pass
traffic, hold it (``blackhole``: bytes are read and discarded, connections stay
open — a partition *without* a reset, so only timeouts can detect it), reset it
(``cut``: close every connection and refuse new ones — like a dead host), or
delay it. A blackhole may hold one direction of the link's connections only
(``forward``: what A sends; ``backward``: what B answers), a one-way link.
Latency is drawn per chunk from a range, in order (TCP never reorders), and
``drop`` resets a connection at a forwarded chunk with some probability (a
flaky link: the dialer reconnects). The proxy runs its own event loop on a
background thread so that plain synchronous tests can drive real node
processes around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Literal

Mode = Literal["pass", "blackhole", "cut"]
Direction = Literal["both", "forward", "backward"]


class Link:
    """Forwards connections accepted on ``port`` to ``target``, subject to its faults."""

    def __init__(
        self, proxy: FaultProxy, target: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)
    ) -> None:
        self.proxy = proxy
        self.target = target
        self.listen = listen
        self.cut = False
        #: Per direction: are bytes discarded (a blackhole)?
        self.held = {"forward": False, "backward": False}
        self.delay = (0.0, 0.0)
        self.drop = 0.0
        self.port = 0
        self.bytes_forwarded = 0
        self.resets = 0
        self._rng = random.Random()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"{self.listen[0]}:{self.port}"

    @property
    def mode(self) -> Mode:
        """``cut``, ``blackhole`` (in at least one direction) or ``pass``."""
        if self.cut:
            return "cut"
        return "blackhole" if any(self.held.values()) else "pass"

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pump(reader, up_writer, "forward", writer),
            self._pump(up_reader, writer, "backward", up_writer),
            return_exceptions=True,
        )
        self._writers -= {writer, up_writer}

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
        other: asyncio.StreamWriter,
    ) -> None:
        # Chunks are delayed independently (pipelined, like a long link) but
        # delivered in order: each is due at its arrival plus its delay, and
        # never before the chunk ahead of it.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=256)  # bounded
        delivering = loop.create_task(self._deliver(queue, writer, other))
        due = 0.0
        try:
            while True:
                data = await reader.read(65536)
                if not data or delivering.done():
                    break
                if self.held[direction]:
                    continue
                if self.drop and self._rng.random() < self.drop:
                    self.resets += 1
                    other.transport.abort()
                    break
                low, high = self.delay
                due = max(due, loop.time() + (self._rng.uniform(low, high) if high > 0 else 0.0))
                await queue.put((due, data))
            if not delivering.done():
                await queue.put((due, b""))
            await delivering
        except (ConnectionError, OSError):
            pass
        finally:
            delivering.cancel()
            writer.transport.abort()

    async def _deliver(
        self,
        queue: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    return
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                self.bytes_forwarded += len(data)
                await writer.drain()
        except BaseException:
            # The far side is gone: end the near side too, and free a reader
            # waiting for room in the queue.
            other.transport.abort()
            while not queue.empty():
                queue.get_nowait()
            raise

    async def _set_mode(self, mode: Mode, direction: Direction) -> None:
        directions = ("forward", "backward") if direction == "both" else (direction,)
        if mode == "cut":
            self.cut = True
            for w in list(self._writers):
                w.transport.abort()
            return
        self.cut = False
        for d in directions:
            self.held[d] = mode == "blackhole"

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()

    # -- thread-safe controls -----------------------------------------------------

    def set_mode(self, mode: Mode, direction: Direction = "both") -> None:
        """``cut`` always takes both directions; ``pass`` heals the direction(s) named."""
        self.proxy.call(self._set_mode(mode, direction))

    def set_delay(self, seconds: float, up_to: float | None = None) -> None:
        """Delay every chunk by ``seconds`` (or uniformly in ``[seconds, up_to]``)."""
        self.delay = (seconds, seconds if up_to is None else up_to)

    def set_drop(self, probability: float, seed: int | None = None) -> None:
        """Reset a connection at each forwarded chunk with ``probability``."""
        if seed is not None:
            self._rng.seed(seed)
        self.drop = probability

    def heal(self) -> None:
        """Back to passing everything at once."""
        self.set_mode("pass")
        self.set_delay(0.0)
        self.set_drop(0.0)


class FaultProxy:
    """Owns the proxy thread and every link."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.links: list[Link] = []

    def call(self, coro: object) -> object:
        fut: Future[object] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return fut.result(timeout=10)

    async def _cancel_tasks(self) -> None:
        """End every pump still running, so none is destroyed pending at exit."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def link(self, target: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)) -> Link:
        link = Link(self, target, listen)
        self.call(link._start())
        self.links.append(link)
        return link

    def close(self) -> None:
        for link in self.links:
            with contextlib.suppress(Exception):
                self.call(link._close())
        with contextlib.suppress(Exception):
            self.call(self._cancel_tasks())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


@contextlib.contextmanager
def fault_proxy() -> Iterator[FaultProxy]:
    proxy = FaultProxy()
    try:
        yield proxy
    finally:
        proxy.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.faultproxy LISTEN TARGET [--delay LOW HIGH]``: one link,
    until killed (run inside a network namespace by the multi-host tests)."""
    import argparse
    import signal

    from bedrock_cp.node.config import parse_address

    p = argparse.ArgumentParser(prog="python -m tests.faultproxy")
    p.add_argument("listen", help="host:port to accept on")
    p.add_argument("target", help="host:port to forward to")
    p.add_argument("--delay", nargs=2, type=float, default=(0.0, 0.0), metavar=("LOW", "HIGH"))
    args = p.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with fault_proxy() as proxy:
        link = proxy.link(parse_address(args.target), parse_address(args.listen))
        link.set_delay(*args.delay)
        print(f"forwarding {link.address} -> {args.target}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
