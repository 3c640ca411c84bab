"""TCP proxies in the soak's own event loop: the network between the product and Redis, and a load balancer.

``RedisProxy`` sits between every gateway and worker and Redis and misbehaves on request, the way a network
does: it delays replies, cuts every connection (and refuses new ones for a while), or black-holes traffic
(accepts and never forwards, until healed, when whatever was sent meanwhile is delivered late, as TCP would).
``Balancer`` spreads connections over the live gateways, as a Kubernetes Service does: a refused connection
is tried on the next gateway, so only requests in flight on a killed gateway fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Final

__all__ = ["Balancer", "RedisProxy"]

_CHUNK: Final = 65_536
_CONNECT_TIMEOUT: Final = 2.0


class _Link:
    """One proxied connection: two pumps, closed together."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class RedisProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_port``; ``delay``, ``cut`` and ``blackhole`` misbehave."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.delay = 0.0  # seconds added to every reply from Redis
        self.refusing = False  # new connections are closed at once
        self._open = asyncio.Event()  # cleared while black-holed
        self._open.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self.connections_total = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.heal()
        for link in list(self._links):
            link.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def live_connections(self) -> int:
        return len(self._links)

    def cut(self) -> int:
        """Abort every connection (RST both ways); returns how many were cut."""
        links = list(self._links)
        for link in links:
            link.abort()
        return len(links)

    def blackhole(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        self.delay = 0.0
        self.refusing = False
        self._open.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        if self.refusing:
            writer.transport.abort()
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._open.wait()  # a black hole accepts and then says nothing
            try:
                up_reader, upstream = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.upstream_port), _CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                return
            link.upstream = upstream
            link.tasks = [
                asyncio.create_task(self._requests(reader, upstream)),
                asyncio.create_task(self._replies(up_reader, writer)),
            ]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            link.abort()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Commands go through as they come, unless black-holed (then they wait for the heal)."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(_CHUNK):
                await self._open.wait()
                writer.write(data)
                await writer.drain()
            await self._open.wait()  # a close sent into a black hole arrives after the heal too

    async def _replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Replies keep their order; each is held ``delay`` seconds from when it arrived."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(_CHUNK):
                    queue.put_nowait((time.monotonic(), data))
            queue.put_nowait((time.monotonic(), b""))

        reading = asyncio.create_task(read())
        try:
            with contextlib.suppress(OSError):
                while True:
                    arrived, data = await queue.get()
                    wait = arrived + self.delay - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await self._open.wait()
                    if not data:
                        return
                    writer.write(data)
                    await writer.drain()
        finally:
            reading.cancel()


class Balancer:
    """Round-robin TCP balancer over the ports ``targets()`` returns; a refused connection tries the next."""

    def __init__(self, targets: Callable[[], list[int]]) -> None:
        self._targets = targets
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        ports = self._targets()
        if not ports:
            return None
        start = next(self._turn)
        for i in range(len(ports)):
            port = ports[(start + i) % len(ports)]
            with contextlib.suppress(OSError, TimeoutError):
                return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), _CONNECT_TIMEOUT)
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        self._links.add(link)
        try:
            upstream = await self._connect()
            if upstream is None:
                return
            up_reader, link.upstream = upstream
            link.tasks = [
                asyncio.create_task(_copy(reader, link.upstream)),
                asyncio.create_task(_copy(up_reader, writer)),
            ]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            link.abort()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
