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
from smsgw.gateway.context import GATEWAY, client_of
from smsgw.redisdb import REDIS_ERRORS

__all__ = ["BLOCK_MS", "OPEN_READS", "end_streams", "routes"]

routes = web.RouteTableDef()
BLOCK_MS = (
    5_000  # also the keep-alive period (proxies drop silent streams) and how soon a gone client is noticed
)
_STREAM_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")  # ASCII digits; Redis also wants each part < 2**64
# The XREAD BLOCK of every open stream: a stream never ends by itself, so shutdown cancels these to end them.
OPEN_READS = web.AppKey[set["asyncio.Task[Any]"]]("open_reads")


async def end_streams(app: web.Application) -> None:
    """``on_shutdown``: end open streams now; shutdown would otherwise wait for streams that never end."""
    reads = app[OPEN_READS]
    for read in list(reads):
        read.cancel()


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
    handler = asyncio.current_task()
    reads = request.app[OPEN_READS]
    try:
        await response.write(b": connected\n\n")
        while True:
            read = asyncio.ensure_future(gw.blocking.xread({stream: last}, count=500, block=BLOCK_MS))
            reads.add(read)
            try:
                batches = await read
            except asyncio.CancelledError:
                if handler is None or handler.cancelling():
                    raise
                break  # end_streams: the gateway is shutting down; the client reconnects with Last-Event-ID
            except REDIS_ERRORS:
                await response.write(b": redis unavailable\n\n")
                batches = []
            finally:
                reads.discard(read)
            if not batches:
                await response.write(b": keep-alive\n\n")
                continue
            for event_id, entry in batches[0][1]:
                await response.write(sse_frame(event_id, entry["event"]))
                last = event_id
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        gw.metrics.sse_clients.dec()
    return response
