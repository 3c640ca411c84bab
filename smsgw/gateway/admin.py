"""Dead letters: units that exhausted their retries, listed and replayed by an admin client.

A replay is a new message (id ``{original}-r{k}``) for the dead unit's recipients, so their terminal
``failed`` status never changes back; the id is fixed, so replaying twice is refused (409) and never sends
twice.
"""

from __future__ import annotations

from aiohttp import web

from smsgw import keys
from smsgw.clock import iso
from smsgw.errors import Conflict, Forbidden, NotFound
from smsgw.gateway.context import GATEWAY, Gateway, client_of
from smsgw.gateway.jsonio import json_response
from smsgw.gateway.submit import submit
from smsgw.gateway.validation import SendRequest
from smsgw.records import Recipient, Unit, resource
from smsgw.redisdb import hash_fields
from smsgw.settings import DEFAULT_VALIDITY_OTHER, DEFAULT_VALIDITY_OTP

__all__ = ["routes"]

routes = web.RouteTableDef()
MAX_LIST = 500


def _require_admin(request: web.Request) -> None:
    if not client_of(request).admin:
        raise Forbidden("dead letters are for admin clients")


async def _dead_letter(gw: Gateway, dead_id: str) -> tuple[str, Unit, dict[str, str]]:
    message_id, _, k = dead_id.rpartition(":")
    fields = await hash_fields(gw.redis, keys.message(message_id)) if k.isdigit() else {}
    raw = fields.get(f"u:{k}")
    if not raw:
        raise NotFound(f"no dead letter {dead_id}")
    return message_id, Unit.parse(int(k), raw), fields


def _describe(
    dead_id: str, dead_ms: float, message_id: str, unit: Unit, fields: dict[str, str]
) -> dict[str, object]:
    numbers = fields.get(f"n:{unit.k}", "").split(",")
    return {
        "id": dead_id,
        "message_id": message_id,
        "unit": unit.k,
        "client": fields.get("c"),
        "priority": fields.get("p"),
        "numbers": numbers,
        "reason": unit.reason,
        "attempts": unit.tries,
        "dead_at": iso(int(dead_ms)),
    }


@routes.get("/v1/admin/dead-letters")
async def list_dead_letters(request: web.Request) -> web.Response:
    _require_admin(request)
    gw = request.app[GATEWAY]
    entries = await gw.redis.zrevrange(keys.DEAD, 0, MAX_LIST - 1, withscores=True)
    items = []
    for dead_id, score in entries:
        try:
            message_id, unit, fields = await _dead_letter(gw, dead_id)
        except NotFound:
            continue
        items.append(_describe(dead_id, score, message_id, unit, fields))
    return json_response({"dead_letters": items})


@routes.post("/v1/admin/dead-letters/{id}/replay")
async def replay_dead_letter(request: web.Request) -> web.Response:
    _require_admin(request)
    gw = request.app[GATEWAY]
    dead_id = request.match_info["id"]
    message_id, unit, fields = await _dead_letter(gw, dead_id)
    replay_id = f"{message_id}-r{unit.k}"
    if unit.state != "dead":
        raise Conflict(f"unit {dead_id} is not a dead letter (state {unit.state}); nothing is sent again")
    owner = gw.settings.client_by_name(fields["c"])
    if owner is None:
        raise Conflict(f"client {fields['c']} is no longer configured")
    numbers = [
        n for n in fields[f"n:{unit.k}"].split(",") if Recipient.parse(n, fields[f"r:{n}"]).status == "failed"
    ]
    if not numbers:
        raise Conflict(f"dead letter {dead_id} has no failed recipient left to replay")
    lane = fields["p"]
    send = SendRequest(
        numbers=numbers,
        text=fields["t"],
        brand_id=int(fields["b"]),
        lane=lane,
        send_at_ms=None,
        validity_s=DEFAULT_VALIDITY_OTP if lane == "otp" else DEFAULT_VALIDITY_OTHER,
        stop_list=fields.get("sl") == "1",
        reference=fields.get("ref") or None,
    )
    try:
        done = await submit(gw, owner, send, message_id=replay_id)
    except Conflict:
        await _mark_replayed(gw, message_id, unit, dead_id, replay_id)
        raise Conflict(f"dead letter {dead_id} was already replayed as {replay_id}") from None
    await _mark_replayed(gw, message_id, unit, dead_id, replay_id)
    return json_response(resource(done.message.id, done.fields), status=202)


async def _mark_replayed(gw: Gateway, message_id: str, unit: Unit, dead_id: str, replay_id: str) -> None:
    value = f"replayed:{replay_id}|{unit.owner}|{unit.sms_id}|{unit.tries}|{unit.reason}"
    async with gw.redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.message(message_id), f"u:{unit.k}", value)
        pipe.zrem(keys.DEAD, dead_id)
        await pipe.execute()
