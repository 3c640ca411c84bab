"""One Redis reader per client stream per gateway process, fanned out to every open ``GET /v1/events``.

Why: a blocking ``XREAD`` holds its Redis connection for the whole wait. One per HTTP stream made a gateway's
Redis connections grow with its callers (300 streams from one client: 302 connections), until Redis'
``maxclients`` refused the accepts and the workers too. Here:

- a client's open streams share one reader task (``XREAD BLOCK`` on the dedicated ``blocking`` pool, capped at
  the number of configured clients: there is never more than one reader per client);
- a joining stream catches up with non-blocking ``XRANGE`` pages on the normal pool, at most
  ``CATCH_UP_READS`` at a time per process, so a reconnect storm cannot open a connection per stream either;
- open streams are capped per client and per process (429 beyond), and each has a bounded queue: a stream
  whose HTTP reader falls a whole buffer behind is ended (it resumes with ``Last-Event-ID``), never buffered.

Joining without a gap or a duplicate: a stream first registers with the reader (from then on every entry the
reader reads is queued for it), then catches up from its own position, then drains its queue skipping what the
catch-up already sent. A reader's position is always a concrete id (the newest at its start, never ``$``), so
every entry is either at or before that position, and then already in Redis when the catch-up reads, or after
it, and then queued.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

import structlog
from redis.asyncio import Redis

from smsgw.errors import ServiceUnavailable, StoreUnavailable, TooManyRequests
from smsgw.metrics import GatewayMetrics
from smsgw.settings import Settings
from smsgw.store.events import sse_frame
from smsgw.store.streams import EventStreams, reader_client

__all__ = [
    "BLOCK_MS",
    "CATCH_UP_READS",
    "KEEPALIVE",
    "EventHub",
    "Feed",
    "StreamId",
    "parse_id",
    "reader_redis",
]

log = structlog.get_logger(__name__)

StreamId = tuple[int, int]
Entry = tuple[StreamId, bytes]  # an entry's id and its SSE frame, built once and shared by every subscriber

BLOCK_MS: Final = 5_000  # a reader's XREAD wait; an idle reader notices its last subscriber left within it
KEEPALIVE: Final = 5.0  # seconds between keep-alive comments (proxies drop silent connections)
TICK: Final = 1.0  # how often an idle stream checks that its HTTP client is still there
CATCH_UP_READS: Final = 4  # concurrent XRANGE/XREVRANGE of joining streams, per process
PAGE: Final = 500  # entries per catch-up XRANGE and per reader XREAD
RETRY_AFTER: Final = 10  # seconds a refused stream is told to wait: streams are long-lived, slots free slowly
REDIS_PAUSE: Final = 0.5  # seconds between attempts while Redis is away
_MAX_PART: Final = 2**64 - 1

KEEPALIVE_COMMENT: Final = b": keep-alive\n\n"
UNAVAILABLE_COMMENT: Final = b": redis unavailable\n\n"
TOO_SLOW = "too-slow"
SHUTDOWN = "shutdown"
FAILED = "failed"
FAREWELL: Final = {
    TOO_SLOW: b": too slow: reconnect with Last-Event-ID\n\n",
    SHUTDOWN: b": shutting down: reconnect with Last-Event-ID\n\n",
    FAILED: b": stream failed: reconnect with Last-Event-ID\n\n",
}


def parse_id(value: str) -> StreamId:
    """A stream id (``ms-seq``, or ``ms`` meaning ``ms-0``) as a comparable pair."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def _format(position: StreamId) -> str:
    return f"{position[0]}-{position[1]}"


def _successor(position: StreamId) -> str | None:
    """The first id after ``position`` (XRANGE's start is inclusive), None after the largest possible id."""
    ms, seq = position
    if seq < _MAX_PART:
        return f"{ms}-{seq + 1}"
    return None if ms >= _MAX_PART else f"{ms + 1}-0"


def reader_redis(settings: Settings) -> Redis:
    """The readers' own client (``store.streams.reader_client``)."""
    return reader_client(settings, BLOCK_MS)


class Subscription:
    """One open stream's queue of live entries, bounded: a slow stream is ended, never buffered further."""

    __slots__ = ("_limit", "_queue", "_ready", "ended")

    def __init__(self, limit: int) -> None:
        self._queue: deque[Entry] = deque()
        self._limit = limit
        self._ready = asyncio.Event()
        self.ended: str | None = None

    def offer(self, entry: Entry) -> bool:
        """Queue ``entry``; False when the queue is full (the caller ends this subscription)."""
        if len(self._queue) >= self._limit:
            return False
        self._queue.append(entry)
        self._ready.set()
        return True

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        self._queue.clear()  # free the memory now: the client resumes from its last id anyway
        self._ready.set()

    async def take(self, within: float) -> list[Entry]:
        """Everything queued, waiting up to ``within`` seconds for something (or for the end) when empty."""
        if not self._queue and self.ended is None:
            self._ready.clear()
            try:
                async with asyncio.timeout(within):
                    await self._ready.wait()
            except TimeoutError:
                pass
        entries = list(self._queue)
        self._queue.clear()
        return entries


class _Reader:
    """The one ``XREAD BLOCK`` loop of one stream key in this process; it leaves when nobody listens."""

    def __init__(self, hub: EventHub, key: str, client: str, position: StreamId) -> None:
        self.hub = hub
        self.key = key
        self.client = client
        self.position = position
        self.subscribers: set[Subscription] = set()
        self.task = asyncio.create_task(self._run(), name=f"event-reader:{client}")

    async def _run(self) -> None:
        try:
            while self.subscribers:
                try:
                    read = await self.hub.streams.wait(
                        self.client, _format(self.position), self.hub.read_count, BLOCK_MS
                    )
                except StoreUnavailable as exc:
                    log.warning("events.reader_redis_error", client=self.client, error=str(exc))
                    await asyncio.sleep(REDIS_PAUSE)
                    continue
                if read:
                    self._fan_out(read)
        except Exception:
            log.exception("events.reader_failed", client=self.client)
            for subscriber in self.subscribers:
                subscriber.end(FAILED)
            self.subscribers.clear()
        finally:
            # No await since the emptiness check: a stream joining from now on finds no reader and starts one.
            if self.hub.readers.get(self.key) is self:
                del self.hub.readers[self.key]

    def _fan_out(self, entries: list[tuple[str, str | None, str]]) -> None:
        for raw_id, data, kind in entries:
            entry_id = parse_id(raw_id)
            self.position = entry_id
            if data is None:
                continue  # not an event of ours: nothing to serve
            entry = (entry_id, sse_frame(raw_id, data, kind))
            for subscriber in [s for s in self.subscribers if not s.offer(entry)]:
                self.subscribers.discard(subscriber)
                subscriber.end(TOO_SLOW)
                self.hub.metrics.sse_too_slow.labels(self.client).inc()


class Feed:
    """One stream's bytes: a catch-up from its position, then the live fan-out; each entry once, in order."""

    def __init__(self, hub: EventHub, reader: _Reader, subscription: Subscription, start: str) -> None:
        self.start = start  # the position the stream announces (``id:``) and resumes after
        self._hub = hub
        self._reader = reader
        self._subscription = subscription
        self._sent = parse_id(start)
        self._catching_up = True
        self._done = False

    async def next_chunk(self, alive: Callable[[], bool]) -> bytes | None:
        """The next bytes to write (events or a comment), or None once the stream is over."""
        idle = 0.0
        while not self._done:
            ended = self._subscription.ended
            if ended is not None:
                self._done = True
                return FAREWELL[ended]
            if self._catching_up:
                chunk = await self._catch_up()
                if chunk:
                    return chunk
                continue
            entries = await self._subscription.take(TICK)
            fresh = [frame for entry_id, frame in entries if entry_id > self._sent]
            if fresh:
                self._sent = entries[-1][0]  # entries come in id order
                return b"".join(fresh)
            if not alive():
                self._done = True
                return None
            idle += 0 if entries else TICK
            if idle >= KEEPALIVE:
                return KEEPALIVE_COMMENT
        return None

    async def _catch_up(self) -> bytes:
        """One XRANGE page after what was sent (b"" once caught up); a comment while Redis is away."""
        start = _successor(self._sent)
        if start is None:
            self._catching_up = False
            return b""
        try:
            async with self._hub.gate:
                page = await self._hub.streams.page(self._reader.client, start, PAGE)
        except StoreUnavailable:
            await asyncio.sleep(REDIS_PAUSE)
            return UNAVAILABLE_COMMENT
        if len(page) < PAGE:
            self._catching_up = False
        if not page:
            return b""
        self._sent = parse_id(page[-1][0])
        return b"".join(sse_frame(event_id, data, kind) for event_id, data, kind in page if data is not None)

    def close(self) -> None:
        """The stream is gone: stop fanning out to it (its reader leaves with the last one)."""
        self._subscription.end(SHUTDOWN)
        self._reader.subscribers.discard(self._subscription)


class EventHub:
    """The process's readers, its open streams per client and the caps on them."""

    def __init__(self, redis: Redis, blocking: Redis, settings: Settings, metrics: GatewayMetrics) -> None:
        self.streams = EventStreams(redis, blocking)
        self.metrics = metrics
        self.max_streams = settings.events_max_streams
        self.max_per_client = settings.events_max_streams_per_client
        self.buffer = settings.events_stream_buffer
        # One read never offers a stream more than its whole buffer: streams drain between reads.
        self.read_count = min(PAGE, self.buffer)
        self.readers: dict[str, _Reader] = {}
        self.gate = asyncio.Semaphore(CATCH_UP_READS)
        self._open: Counter[str] = Counter()
        self._closed = False

    @property
    def open_streams(self) -> int:
        return self._open.total()

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        """Hold one of the client's and the process's stream slots, or refuse with 429 and Retry-After."""
        if self._closed:
            raise ServiceUnavailable("the gateway is shutting down; reconnect to another replica")
        limit = None
        if self.open_streams >= self.max_streams:
            limit = "process"
        elif self._open[client] >= self.max_per_client:
            limit = "client"
        if limit is not None:
            self.metrics.sse_refused.labels(client, limit).inc()
            cap = self.max_streams if limit == "process" else self.max_per_client
            raise TooManyRequests(
                f"too many open event streams ({limit} limit: {cap}); close one or retry later",
                retry_after=RETRY_AFTER,
            )
        self._open[client] += 1
        try:
            yield
        finally:
            self._open[client] -= 1
            if self._open[client] <= 0:
                del self._open[client]

    async def open(self, key: str, client: str, last: str | None) -> Feed:
        """Join ``key``'s fan-out at ``last`` (None: its newest entry). Redis errors propagate (503)."""
        newest = await self._newest(client) if last is None else None
        reader = self.readers.get(key)
        if reader is None and newest is None:
            newest = await self._newest(client)
            reader = self.readers.get(key)  # another stream may have started it meanwhile
        if self._closed:
            raise ServiceUnavailable("the gateway is shutting down; reconnect to another replica")
        if reader is None:
            assert newest is not None
            reader = self.readers[key] = _Reader(self, key, client, parse_id(newest))
        subscription = Subscription(self.buffer)
        reader.subscribers.add(subscription)  # before the catch-up reads: nothing can fall in between
        start = last if last is not None else newest
        assert start is not None
        return Feed(self, reader, subscription, start)

    async def _newest(self, client: str) -> str:
        async with self.gate:
            return await self.streams.newest(client)

    async def close(self) -> None:
        """End every stream now and stop the readers (at shutdown: clients resume elsewhere by id)."""
        self._closed = True
        readers = list(self.readers.values())
        for reader in readers:
            for subscriber in reader.subscribers:
                subscriber.end(SHUTDOWN)
            reader.subscribers.clear()
        # Cancel until done: redis-py can swallow a cancellation that lands while it connects, and the
        # read would then block its full BLOCK_MS.
        pending = {reader.task for reader in readers}
        for _ in range(50):
            if not pending:
                break
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        self.readers.clear()
