"""Dead letters: units that exhausted their retries, listed and replayed by an admin client.

A replay is a new message (id ``{original}-r{k}``) for the dead unit's recipients, so their terminal
``failed`` status never changes back; the id is fixed, so replaying twice is refused (409) and never sends
twice.
"""

from __future__ import annotations

from aiohttp import web

from smsgw.clock import iso
from smsgw.command import SendCommand
from smsgw.errors import Conflict, Forbidden, NotFound
from smsgw.gateway.context import GATEWAY, client_of
from smsgw.gateway.jsonio import json_response
from smsgw.gateway.submit import submit
from smsgw.store.messages import Replayed
from smsgw.store.statuses import UNIT_DEAD
from smsgw.store.upkeep import DeadLetter

__all__ = ["routes"]

routes = web.RouteTableDef()
MAX_LIST = 500


def _require_admin(request: web.Request) -> None:
    if not client_of(request).admin:
        raise Forbidden("dead letters are for admin clients")


def _describe(letter: DeadLetter) -> dict[str, object]:
    meta, unit = letter.view.meta, letter.unit
    return {
        "id": letter.id,
        "message_id": meta.id,
        "unit": unit.k,
        "client": meta.client,
        "priority": meta.lane,
        "numbers": list(letter.view.unit_numbers[unit.k]),
        "reason": unit.reason,
        "attempts": unit.tries,
        "dead_at": iso(letter.dead_ms),
    }


@routes.get("/v1/admin/dead-letters")
async def list_dead_letters(request: web.Request) -> web.Response:
    _require_admin(request)
    letters = await request.app[GATEWAY].store.upkeep.dead_letters(MAX_LIST)
    return json_response({"dead_letters": [_describe(letter) for letter in letters]})


@routes.post("/v1/admin/dead-letters/{id}/replay")
async def replay_dead_letter(request: web.Request) -> web.Response:
    _require_admin(request)
    gw = request.app[GATEWAY]
    dead_id = request.match_info["id"]
    letter = await gw.store.upkeep.dead_letter(dead_id)
    if letter is None:
        raise NotFound(f"no dead letter {dead_id}")
    view, unit, replay_id = letter.view, letter.unit, letter.replay_id
    if unit.state != UNIT_DEAD:
        raise Conflict(f"unit {dead_id} is not a dead letter (state {unit.state}); nothing is sent again")
    owner = gw.settings.client_by_name(view.meta.client)
    if owner is None:
        raise Conflict(f"client {view.meta.client} is no longer configured")
    failed = letter.failed_numbers()
    if not failed:
        raise Conflict(f"dead letter {dead_id} has no failed recipient left to replay")
    command = SendCommand.again(view, failed)
    try:
        done = await submit(gw, owner, command, message_id=replay_id)
    except Conflict:
        await gw.store.upkeep.mark_replayed(letter, replay_id)
        raise Conflict(f"dead letter {dead_id} was already replayed as {replay_id}") from None
    await gw.store.upkeep.mark_replayed(letter, replay_id)
    if isinstance(done, Replayed):  # pragma: no cover - replays carry no idempotency key
        raise Conflict(f"dead letter {dead_id} was already replayed as {replay_id}")
    return json_response(done.view.resource(), status=202)
