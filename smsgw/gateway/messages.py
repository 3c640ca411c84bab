"""``POST /v1/messages``, ``GET /v1/messages/{id}``, ``GET /v1/messages/{id}/recipients``, ``DELETE``."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from aiohttp import web

from smsgw.errors import Conflict, NotFound, ValidationFailed
from smsgw.gateway.context import GATEWAY, MESSAGE_ID, RETRY_ADVICE, client_of
from smsgw.gateway.idempotency import HEADER, idempotency
from smsgw.gateway.jsonio import json_response, read_json
from smsgw.gateway.submit import MISMATCH, submit
from smsgw.gateway.validation import validate_send
from smsgw.store.messages import Mismatch, Replayed
from smsgw.store.records import MessageView, recipient_items
from smsgw.store.statuses import STATUSES

__all__ = ["load_message", "routes"]

routes = web.RouteTableDef()
DEFAULT_PAGE = 1_000
MAX_PAGE = 10_000


def _minimal(request: web.Request) -> bool:
    """RFC 7240 ``Prefer: return=minimal``: the resource without ``recipients`` (large messages)."""
    return any(
        part.strip().lower() == "return=minimal"
        for value in request.headers.getall("Prefer", [])
        for part in value.split(",")
    )


def _answer(request: web.Request, view: MessageView, status: int = 200) -> web.Response:
    minimal = _minimal(request)
    response = json_response(view.resource(minimal=minimal), status=status)
    if minimal:
        response.headers["Preference-Applied"] = "return=minimal"
    return response


async def load_message(request: web.Request, message_id: str) -> MessageView:
    """The message, or 404 when unknown or owned by another client (indistinguishable on purpose)."""
    view = await request.app[GATEWAY].store.messages.view(message_id)
    if view is None or view.meta.client != client_of(request).name:
        raise NotFound(f"no message {message_id}")
    return view


def _replayed(request: web.Request, replay: Replayed) -> web.Response:
    if replay.view is None:
        raise NotFound(f"message {replay.message_id} of this {HEADER} is no longer kept")
    request[MESSAGE_ID] = replay.message_id
    return _answer(request, replay.view, replay.status_code)


@routes.post("/v1/messages")
async def create_message(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    client = client_of(request)
    body = await read_json(request)
    key = idempotency(request.headers.get(HEADER), client, "messages", body)
    try:
        command = validate_send(body, client, gw.settings, datetime.now(UTC), gw.brands.refusal)
    except ValidationFailed:
        # A replay's body may no longer validate (a send_at now past): the key's record still answers.
        found = await gw.store.messages.replay(key) if key is not None else None
        if isinstance(found, Replayed):
            return _replayed(request, found)
        if isinstance(found, Mismatch):
            raise ValidationFailed(MISMATCH) from None
        raise
    done = await submit(gw, client, command, idempotency=key)
    if isinstance(done, Replayed):
        return _replayed(request, done)
    request[MESSAGE_ID] = done.view.meta.id
    return _answer(request, done.view, 202)


@routes.get("/v1/messages/{id}")
async def get_message(request: web.Request) -> web.Response:
    message_id = request.match_info["id"]
    request[MESSAGE_ID] = message_id
    return _answer(request, await load_message(request, message_id))


def _page_params(request: web.Request) -> tuple[str | None, int, int]:
    errors = []
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        errors.append({"field": "status", "message": f"must be one of {', '.join(STATUSES)}"})
    raw_limit = request.query.get("limit", str(DEFAULT_PAGE))
    limit = int(raw_limit) if raw_limit.isdigit() else 0
    if not 1 <= limit <= MAX_PAGE:
        errors.append({"field": "limit", "message": f"must be an integer from 1 to {MAX_PAGE}"})
    offset = _cursor_offset(request.query.get("cursor"))
    if offset is None:
        errors.append({"field": "cursor", "message": "not a cursor this endpoint gave out"})
    if errors:
        raise ValidationFailed(errors)
    return status, limit, offset or 0


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"r1:{offset}".encode()).decode().rstrip("=")


def _cursor_offset(cursor: str | None) -> int | None:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    tag, _, offset = text.partition(":")
    return int(offset) if tag == "r1" and offset.isdigit() else None


@routes.get("/v1/messages/{id}/recipients")
async def list_recipients(request: web.Request) -> web.Response:
    """A page of recipients in request order, optionally of one status; each page is read when asked."""
    message_id = request.match_info["id"]
    request[MESSAGE_ID] = message_id
    status, limit, offset = _page_params(request)
    view = await load_message(request, message_id)
    recipients = view.recipients()
    matching = [i for i in range(offset, len(recipients)) if status is None or recipients[i].status == status]
    page = [recipients[i] for i in matching[:limit]]
    more = len(matching) > limit
    body = {"recipients": recipient_items(page), "next_cursor": _cursor(matching[limit]) if more else None}
    return json_response(body)


@routes.delete("/v1/messages/{id}")
async def cancel_message(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    message_id = request.match_info["id"]
    request[MESSAGE_ID] = message_id
    await load_message(request, message_id)
    request[RETRY_ADVICE] = (
        f"Cancelling again is safe (a cancel applies once); GET /v1/messages/{message_id} shows each "
        "recipient."
    )
    cancelled = await gw.store.messages.cancel(message_id, client_of(request).name)
    if cancelled is None:
        raise NotFound(f"no message {message_id}")
    if cancelled == 0:
        raise Conflict("nothing to cancel: every recipient was already handed to uBill or is final")
    return _answer(request, await load_message(request, message_id))
