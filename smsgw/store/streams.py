"""Reading the clients' event streams (the scripts write them, with the status change they describe).

``smsgw:stream:{client}`` holds one entry per event, field ``event`` = the contract's JSON (and ``kind`` =
``verification`` for phone verification events). Readers get ``(stream id, event JSON, kind)`` and never the
key or the entry layout.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from smsgw.settings import Settings
from smsgw.store import keys
from smsgw.store.connection import connect, translated

__all__ = ["EventStreams", "reader_client"]

Event = tuple[str, str | None, str]  # stream id, event JSON (None: not an event), kind (status, verification)


def reader_client(settings: Settings, block_ms: int) -> Redis:
    """A client for blocking reads only: they never take the API's connections, and there is never more than
    one connection per configured client (each client stream has at most one reader per process)."""
    return connect(settings, blocking=block_ms / 1000, max_connections=max(1, len(settings.clients)))


def _events(entries: Any) -> list[Event]:
    return [
        (str(entry_id), fields.get("event"), fields.get("kind", "status")) for entry_id, fields in entries
    ]


class EventStreams:
    def __init__(self, redis: Redis, blocking: Redis) -> None:
        self._redis = redis
        self._blocking = blocking

    async def newest(self, client: str) -> str:
        """The id of the client's newest event ("0-0" when there is none)."""
        with translated():
            newest: Any = await self._redis.xrevrange(keys.client_stream(client), count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def page(self, client: str, start: str, count: int) -> list[Event]:
        """Up to ``count`` events from ``start`` (inclusive)."""
        with translated():
            entries: Any = await self._redis.xrange(keys.client_stream(client), min=start, count=count)
        return _events(entries)

    async def wait(self, client: str, after: str, count: int, block_ms: int) -> list[Event]:
        """Up to ``count`` events after ``after``, waiting up to ``block_ms`` for the first."""
        with translated():
            read: Any = await self._blocking.xread(
                {keys.client_stream(client): after}, count=count, block=block_ms
            )
        return _events(read[0][1]) if read else []
