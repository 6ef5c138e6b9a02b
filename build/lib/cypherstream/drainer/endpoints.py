"""`/metrics`, `/healthz` and `/readyz` on one port, served by the drainer's own loop.

Served by the event loop that drains, so a stuck loop fails the liveness probe
by not answering at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[tuple[bool, str]]]


class Endpoints:
    """A minimal HTTP/1.1 server for probes and scrapes; one request per connection."""

    def __init__(
        self, registry: CollectorRegistry, healthy: Check, ready: Check, host: str, port: int
    ) -> None:
        self._registry = registry
        self._routes: dict[str, Check] = {"/healthz": healthy, "/readyz": ready}
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        log.info("serving metrics and probes", extra={"port": self.port})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers are not needed
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            status, content_type, body = await self._respond(path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, path: str) -> tuple[str, str, bytes]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        check = self._routes.get(path)
        if check is None:
            return "404 Not Found", "text/plain", b"try /metrics, /healthz or /readyz\n"
        ok, reason = await check()
        status = "200 OK" if ok else "503 Service Unavailable"
        return status, "text/plain; charset=utf-8", f"{reason}\n".encode()
