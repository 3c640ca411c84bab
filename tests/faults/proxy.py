"""A TCP proxy between a process and Redis that can delay replies, black-hole traffic or cut connections.

Faults a network or a slow disk causes and a killed process does not: a reply that arrives after the caller's
deadline although Redis ran the command (``delay_replies``), a Redis that is there but silent (``blackhole``:
nothing moves either way until ``heal``, as TCP holds packets over a partition), and connections that drop
(``cut``). ``delay_replies(..., when_request_contains=marker)`` delays only the reply to a request carrying
``marker`` (e.g. a unique word in a message's text), so one command can be made late while every other
command of the same process goes through at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

__all__ = ["RedisProxy"]

_CHUNK = 65_536


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.armed = 0  # requests seen whose reply is to be delayed
        self.tail = b""  # the end of the last request chunk, to match a marker split across reads

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                writer.transport.abort()


class RedisProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.delay = 0.0
        self.markers: tuple[bytes, ...] | None = None
        self.delayed = 0  # replies held back so far
        self._open = asyncio.Event()
        self._open.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> RedisProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.heal()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> RedisProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def delay_replies(self, seconds: float, when_request_contains: str | tuple[str, ...] = ()) -> None:
        """Hold each reply ``seconds`` (only replies to requests carrying a marker, when any is given)."""
        self.delay = seconds
        wanted = (when_request_contains,) if isinstance(when_request_contains, str) else when_request_contains
        self.markers = tuple(m.encode() for m in wanted) or None

    def no_delay(self) -> None:
        self.delay, self.markers = 0.0, None

    def blackhole(self) -> None:
        """Connections stay open, nothing reaches either side (until ``heal``)."""
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    def cut(self) -> None:
        """Abort every open connection (a reset, as a failover or a dropped NAT entry would)."""
        for link in list(self._links):
            link.close()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(self._requests(reader, link), self._replies(up_reader, link))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.close()
            self._links.discard(link)

    async def _requests(self, reader: asyncio.StreamReader, link: _Link) -> None:
        while chunk := await reader.read(_CHUNK):
            await self._open.wait()
            if self.delay > 0:
                window = link.tail + chunk
                if self.markers is None or any(m in window for m in self.markers):
                    link.armed += 1
                    window = b""  # counted once, even if the marker is also in the next read's tail
                link.tail = window[-256:]
            link.upstream.write(chunk)
            await link.upstream.drain()
        link.close()

    async def _replies(self, reader: asyncio.StreamReader, link: _Link) -> None:
        while chunk := await reader.read(_CHUNK):
            await self._open.wait()
            if link.armed and self.delay > 0:
                link.armed -= 1
                self.delayed += 1
                release = time.monotonic() + self.delay
                await asyncio.sleep(max(0.0, release - time.monotonic()))
            link.client.write(chunk)
            await link.client.drain()
        link.close()
