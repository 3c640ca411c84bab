"""``POST /v1/messages``, ``GET /v1/messages/{id}``, ``DELETE /v1/messages/{id}``."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from smsgw import keys
from smsgw.clock import iso, now_ms
from smsgw.errors import Conflict, NotFound
from smsgw.events import stream_minid
from smsgw.gateway.context import GATEWAY, MESSAGE_ID, client_of
from smsgw.gateway.idempotency import idempotent
from smsgw.gateway.jsonio import json_response, read_json
from smsgw.gateway.submit import submit
from smsgw.gateway.validation import validate_send
from smsgw.records import new_message_id, resource
from smsgw.redisdb import hash_fields

__all__ = ["load_message", "routes"]

routes = web.RouteTableDef()


async def load_message(request: web.Request, message_id: str) -> dict[str, str]:
    """The message hash, or 404 when unknown or owned by another client (indistinguishable on purpose)."""
    fields = await hash_fields(request.app[GATEWAY].redis, keys.message(message_id))
    if not fields or fields.get("c") != client_of(request).name:
        raise NotFound(f"no message {message_id}")
    return fields


@routes.post("/v1/messages")
async def create_message(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    client = client_of(request)
    body = await read_json(request)
    message_id = new_message_id()

    async def run(record: tuple[str, str] | None) -> web.Response:
        send = validate_send(body, client, gw.settings, datetime.now(UTC))
        done = await submit(gw, client, send, message_id=message_id, idempotency=record)
        request[MESSAGE_ID] = done.message.id
        return json_response(resource(done.message.id, done.fields), status=202)

    key = request.headers.get("Idempotency-Key")
    if key is None:
        return await run(None)
    return await idempotent(request, key, body, message_id, run)


@routes.get("/v1/messages/{id}")
async def get_message(request: web.Request) -> web.Response:
    message_id = request.match_info["id"]
    request[MESSAGE_ID] = message_id
    return json_response(resource(message_id, await load_message(request, message_id)))


@routes.delete("/v1/messages/{id}")
async def cancel_message(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    message_id = request.match_info["id"]
    request[MESSAGE_ID] = message_id
    fields = await load_message(request, message_id)
    now = now_ms()
    result = await gw.scripts.cancel(
        keys=[keys.message(message_id), keys.lane_queue(fields["p"])],
        args=[client_of(request).name, now, iso(now), stream_minid(now, gw.settings.events_retention)],
    )
    if result[0] != "ok":
        raise NotFound(f"no message {message_id}")
    if int(result[1]) == 0:
        raise Conflict("nothing to cancel: every recipient was already handed to uBill or is final")
    return json_response(resource(message_id, await load_message(request, message_id)))
