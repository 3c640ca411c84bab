"""``GET /v1/events``: a client's own status events as server-sent events, resumable with ``Last-Event-ID``.

Event ids are the Redis stream ids, so a consumer that reconnects with the last id it saw gets exactly what it
missed (within the stream's 24 h+ retention). ``?last_event_id=0`` replays everything still kept.

Every stream first announces its position as an ``id:`` line without data (SSE: it sets the client's last
event id and dispatches nothing). Without it, a client that connected without an id and lost the connection
before its first event would reconnect without an id again and skip what happened in between.

The reading is shared: ``event_hub`` runs one Redis reader per client stream in this process and caps the open
streams (429 beyond), so Redis connections do not grow with the number of streams.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from aiohttp import web

from smsgw.errors import BadRequest
from smsgw.gateway.context import GATEWAY, client_of
from smsgw.gateway.event_hub import EventHub, reader_redis
from smsgw.store import keys

__all__ = ["HUB", "end_streams", "install", "reader_redis", "routes"]

routes = web.RouteTableDef()
_STREAM_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")  # ASCII digits; Redis also wants each part < 2**64
HUB = web.AppKey("event_hub", EventHub)
# A write that the client does not take within this long ends its stream: the slot and the buffers are freed.
WRITE_TIMEOUT = 30.0


def install(app: web.Application) -> None:
    """The process's event hub (needs ``app[GATEWAY]``), ended with the app's shutdown."""
    gw = app[GATEWAY]
    app[HUB] = EventHub(gw.redis, gw.blocking, gw.settings, gw.metrics)
    app.on_shutdown.append(end_streams)


async def end_streams(app: web.Application) -> None:
    """``on_shutdown``: end open streams now (clients reconnect elsewhere with ``Last-Event-ID``)."""
    await app[HUB].close()


def _requested_position(request: web.Request) -> str | None:
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if last is not None and not (_STREAM_ID.fullmatch(last) and max(map(int, last.split("-"))) < 2**64):
        raise BadRequest("Last-Event-ID must be a stream id such as 1764114000000-0")
    return last


@routes.get("/v1/events")
async def stream_events(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    hub = request.app[HUB]
    client = client_of(request)
    last = _requested_position(request)
    with hub.slot(client.name):
        feed = await hub.open(keys.client_stream(client.name), client.name, last)
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            gw.metrics.sse_clients.inc()
            try:
                await _write(request, response, f": connected\n\nid: {feed.start}\n\n".encode())
                alive = _alive(request)
                while (chunk := await feed.next_chunk(alive)) is not None:
                    await _write(request, response, chunk)
            except ConnectionError:
                pass  # the client went away: nothing to tell it
            finally:
                gw.metrics.sse_clients.dec()
        finally:
            feed.close()
    return response


async def _write(request: web.Request, response: web.StreamResponse, chunk: bytes) -> None:
    try:
        async with asyncio.timeout(WRITE_TIMEOUT):
            await response.write(chunk)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("the client stopped reading its event stream") from None


def _alive(request: web.Request) -> Callable[[], bool]:
    def alive() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    return alive
