"""``GET /v1/events``: a client's own status events as server-sent events, resumable with ``Last-Event-ID``.

Event ids are the Redis stream ids, so a consumer that reconnects with the last id it saw gets exactly what it
missed (within the stream's 24 h+ retention). ``?last_event_id=0`` replays everything still kept.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from smsgw import keys
from smsgw.errors import BadRequest
from smsgw.events import sse_frame
from smsgw.gateway.context import GATEWAY, Gateway, client_of
from smsgw.redisdb import REDIS_ERRORS

__all__ = ["BLOCK_MS", "SHUTTING_DOWN", "end_streams", "routes"]

routes = web.RouteTableDef()
BLOCK_MS = (
    5_000  # also the keep-alive period (proxies drop silent streams) and how soon a gone client is noticed
)
_STREAM_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")  # ASCII digits; Redis also wants each part < 2**64
# A stream never ends by itself: every open one also waits on this, set when the gateway shuts down.
SHUTTING_DOWN = web.AppKey("shutting_down", asyncio.Event)


async def end_streams(app: web.Application) -> None:
    """``on_shutdown``: end open streams now (clients reconnect elsewhere with ``Last-Event-ID``)."""
    app[SHUTTING_DOWN].set()


async def _next_batch(gw: Gateway, stream: str, last: str, stop: asyncio.Future[Any]) -> list[Any] | None:
    """Up to 500 events after ``last`` ([] after the block time or at shutdown, None when Redis is away)."""
    read = asyncio.ensure_future(gw.blocking.xread({stream: last}, count=500, block=BLOCK_MS))
    await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
    if not read.done():
        read.cancel()
        return []
    try:
        batches: list[Any] = read.result()
    except REDIS_ERRORS:
        await asyncio.sleep(0.5)
        return None
    return batches


@routes.get("/v1/events")
async def stream_events(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    client = client_of(request)
    stream = keys.client_stream(client.name)
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if last is not None and not (_STREAM_ID.fullmatch(last) and max(map(int, last.split("-"))) < 2**64):
        raise BadRequest("Last-Event-ID must be a stream id such as 1764114000000-0")
    if last is None:
        newest = await gw.redis.xrevrange(stream, count=1)
        last = newest[0][0] if newest else "0-0"
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    gw.metrics.sse_clients.inc()
    stop = asyncio.ensure_future(request.app[SHUTTING_DOWN].wait())
    try:
        await response.write(b": connected\n\n")
        while not stop.done():
            batches = await _next_batch(gw, stream, last, stop)
            if batches is None:
                await response.write(b": redis unavailable\n\n")
                continue
            if not batches:
                await response.write(b": keep-alive\n\n")
                continue
            for event_id, entry in batches[0][1]:
                # Verification events carry their kind (SSE `event: verification`); messages' are "status".
                await response.write(sse_frame(event_id, entry["event"], entry.get("kind", "status")))
                last = event_id
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        stop.cancel()
        gw.metrics.sse_clients.dec()
    return response
