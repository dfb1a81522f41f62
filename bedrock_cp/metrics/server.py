"""The metrics endpoint: ``GET /metrics`` over HTTP/1.0 on the node's event loop.

Deliberately tiny (no HTTP library): one request per connection, the request
line and headers read within a deadline and a byte bound, anything but
``GET /metrics`` answered 404 (or 400 when it is not HTTP at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("bedrock_cp.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Most bytes of request line and headers read; the deadline to send them.
MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT = 5.0


class MetricsServer:
    """Serves ``render()`` at ``http://host:port/metrics``."""

    def __init__(self, host: str, port: int, render: Callable[[], str]) -> None:
        self.host = host
        self.port = port
        self._render = render
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_REQUEST_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
                status, body = "400 Bad Request", "not an HTTP request\n"
            elif parts[0] != b"GET" or parts[1].split(b"?", 1)[0] != b"/metrics":
                status, body = "404 Not Found", "only GET /metrics is served here\n"
            else:
                status, body = "200 OK", self._render()
            data = body.encode()
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
