"""The uBill-compatible facade: ``/v1/sms/send``, ``/v1/sms/report/{smsID}``, ``/v1/sms/balance``,
``/v1/sms/brandNames``.

An unmodified uBill client switches by changing its base URL: the gateway token goes where it puts uBill's key
(``key`` query parameter, form/JSON field or header). Answers keep uBill's shapes and statusIDs; the work is
queued, prioritised, retried and tracked like any ``POST /v1/messages``. Like uBill, invalid numbers are
dropped from a call rather than failing it; only a call with no valid number is refused (statusID 50).

Retrying safely: uBill has no idempotency key, so a uBill client that got an HTTP 503 (or no answer) cannot
know whether its send was stored. A plain 503 means it was not. Otherwise the accept itself left the call's
fingerprint pointing at what it stored, and only a definite answer removes it: the identical call repeated
within ``FACADE_RETRY_TTL`` meanwhile, on whichever gateway process, answers the original smsID instead of
sending again. A client that can add a header may also send ``Idempotency-Key``, which works as on
``POST /v1/messages`` (and then no fingerprint is kept).

Brand names: the brands this client may use, as the worker last read them from uBill, in both ``data`` and
``brands`` with string ids (public clients read either and compare ids as strings). A brand the client may use
that uBill did not list is left out, as uBill itself would (it lists the brands it has): a client looking it
up finds "not found", which is what uBill answers a send with it (statusID 10), and so does the gateway.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiohttp import web
from multidict import MultiDictProxy

from smsgw.command import MAX_OTP_RECIPIENTS, MAX_RECIPIENTS, MAX_TEXT, SendCommand, schedule_problem
from smsgw.errors import NothingAccepted, ProblemError, StoreOutcomeUnknown, StoreUnavailable, TooManyRequests
from smsgw.gateway.context import CLIENT, GATEWAY, MESSAGE_ID, REDIS_ERROR
from smsgw.gateway.idempotency import HEADER, idempotency
from smsgw.gateway.jsonio import json_response, loads
from smsgw.gateway.ratelimit import enforce_client_rate
from smsgw.gateway.submit import submit
from smsgw.phones import normalise_many
from smsgw.settings import MAX_BODY_BYTES, Client
from smsgw.store import keys
from smsgw.store.messages import Replayed
from smsgw.store.statuses import to_ubill_code
from smsgw.ubill import APPROVED, Brand, parse_send_time

__all__ = ["routes"]

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.Response]]
ReadHandler = Callable[[web.Request, Client], Awaitable[web.Response]]
routes = web.RouteTableDef()


class Refusal(Exception):
    """A uBill-shaped refusal: ``{"statusID": n, "message": ...}`` with an HTTP status."""

    def __init__(self, status_id: int, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.status_id, self.message, self.http_status = status_id, message, http_status

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        answer = json_response({"statusID": self.status_id, "message": self.message}, status=self.http_status)
        answer.headers.update(headers or {})
        return answer


async def _params(request: web.Request) -> dict[str, Any]:
    """Query, form and JSON parameters merged (body wins), as uBill clients send them."""
    params: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return params
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise Refusal(90, "request body too large", 413)
    if request.content_type == "application/json":
        try:
            body = loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            raise Refusal(90, "JSON error") from None
        if not isinstance(body, dict):
            raise Refusal(90, "JSON error")
        params.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form: MultiDictProxy[Any] = await request.post()
        except ValueError:  # e.g. multipart/form-data without a boundary: uBill's "JSON error" for bad input
            raise Refusal(90, "malformed form body") from None
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


async def _client(request: web.Request, params: dict[str, Any], *, rate: bool = True) -> Client:
    gw = request.app[GATEWAY]
    header = request.headers.get("Authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
    token = bearer or request.headers.get("key") or params.get("key")
    client = gw.auth.identify(token if isinstance(token, str) else None)
    if client is None:
        raise Refusal(99, "Invalid API key", 401)
    request[CLIENT] = client
    if rate:  # a send checks the rate in its own accept script
        try:
            await enforce_client_rate(gw, client)
        except TooManyRequests as exc:
            raise Refusal(99, "Too many requests", 429) from exc
    return client


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")


def _numbers(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool)]
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [part.strip() for part in str(value).split(",") if part.strip()]
    return []


def _send_command(request: web.Request, client: Client, params: dict[str, Any]) -> SendCommand:
    settings = request.app[GATEWAY].settings
    brand = params.get("brandID")
    try:
        brand_id = int(brand) if brand not in (None, "") else client.default_brand
    except (TypeError, ValueError):
        brand_id = None
    if brand_id is None or brand_id not in client.brands:
        raise Refusal(10, "Brand not found")
    problem = request.app[GATEWAY].brands.refusal(brand_id)
    if problem:  # uBill would refuse it: say so now rather than queue recipients bound to be rejected
        raise Refusal(10, problem[:1].upper() + problem[1:])
    raws = _numbers(params.get("numbers"))
    if not raws:
        raise Refusal(20, "Numbers not found")
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        raise Refusal(30, "Text is empty")
    if len(text) > MAX_TEXT or len(raws) > MAX_RECIPIENTS:
        raise Refusal(99, f"at most {MAX_TEXT} characters and {MAX_RECIPIENTS} numbers")
    numbers, _ = normalise_many(raws, settings.allowed_countries)
    if not numbers:
        raise Refusal(50, "No valid numbers")
    otp = _flag(params.get("otp"), False)
    if otp and (not client.otp or len(numbers) > MAX_OTP_RECIPIENTS):
        raise Refusal(99, f"otp needs OTP permission and at most {MAX_OTP_RECIPIENTS} numbers")
    return SendCommand(
        numbers=tuple(numbers),
        text=text,
        brand_id=brand_id,
        lane="otp" if otp else "transactional",
        send_at_ms=_send_time(params.get("sendTime")),
        stop_list=_flag(params.get("stopList"), True),
    )


def _send_time(raw: Any) -> int | None:
    if raw in (None, ""):
        return None
    try:
        moment = parse_send_time(str(raw))
    except ValueError:
        raise Refusal(99, "sendTime must be Y-m-d H:i") from None
    at = int(moment.timestamp() * 1000)
    if schedule_problem(at, int(datetime.now(UTC).timestamp() * 1000)):
        raise Refusal(99, "sendTime must be in the future (at most 30 days ahead)")
    return at


def _fingerprint(command: SendCommand) -> str:
    """The identity of a facade call for recognising its retry: what it would send, and when."""
    fields = [
        command.brand_id,
        list(command.numbers),
        command.text,
        command.lane,
        command.stop_list,
        command.send_at_ms,
    ]
    return hashlib.sha256(orjson.dumps(fields)).hexdigest()


def _caller_waiting(request: web.Request) -> bool:
    """Whether the caller can still hear this answer: one that gave up (timeout, cut) will repeat the call,
    and the repeat must find the call's fingerprint."""
    transport = request.transport
    return transport is not None and not transport.is_closing()


def _outcome_unknown() -> web.Response:
    message = "Service unavailable, outcome unknown: repeating this exact call is safe"
    return Refusal(99, message, 503).response({"Retry-After": "2"})


@routes.route("*", "/v1/sms/send")
async def send(request: web.Request) -> web.Response:
    if request.method not in ("GET", "POST"):
        return Refusal(99, "Method not allowed", 405).response({"Allow": "GET, POST"})
    gw = request.app[GATEWAY]
    try:
        params = await _params(request)
        client = await _client(request, params, rate=False)
        command = _send_command(request, client, params)
        key = idempotency(request.headers.get(HEADER), client, "facade", params)
        retry_key = None if key else keys.facade_retry(client.name, _fingerprint(command))
        done = await submit(gw, client, command, idempotency=key, facade=True, facade_retry=retry_key)
    except Refusal as refusal:
        retry = {"Retry-After": "1"} if refusal.http_status == 429 else None
        return refusal.response(retry)
    except StoreOutcomeUnknown:
        request[REDIS_ERROR] = True
        return _outcome_unknown()
    except StoreUnavailable as exc:
        request[REDIS_ERROR] = True
        said = "nothing was accepted" if isinstance(exc, NothingAccepted) else "try again later"
        return Refusal(99, f"Service unavailable, {said}", 503).response({"Retry-After": "1"})
    except ProblemError as problem:
        return Refusal(99, problem.detail, problem.status).response(problem.headers)
    message_id = done.message_id if isinstance(done, Replayed) else done.view.meta.id
    if retry_key is not None and _caller_waiting(request):  # a definite answer: the same call is new from now
        await gw.store.messages.facade_answered(retry_key, message_id, done.facade_id)
    request[MESSAGE_ID] = message_id
    return json_response({"statusID": 0, "smsID": done.facade_id, "message": "Success"})


def _read_call(handler: ReadHandler) -> Handler:
    """A facade read (report, balance, brandNames): the client from uBill's key (its rate counts), and uBill's
    refusal shape for a bad key and for Redis being unavailable."""

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.Response:
        try:
            client = await _client(request, dict(request.query))
            return await handler(request, client)
        except Refusal as refusal:
            return refusal.response()
        except StoreUnavailable:
            request[REDIS_ERROR] = True
            return Refusal(99, "Service unavailable", 503).response({"Retry-After": "1"})

    return answer


@routes.get("/v1/sms/report/{sms_id}")
@_read_call
async def report(request: web.Request, client: Client) -> web.Response:
    sms_id = request.match_info["sms_id"]
    view = await request.app[GATEWAY].store.messages.facade_message(sms_id) if sms_id.isdigit() else None
    if view is None or view.meta.client != client.name:
        return Refusal(99, "SMS not found").response()
    result = [{"number": r.number, "statusID": str(to_ubill_code(r.status))} for r in view.recipients()]
    return json_response({"statusID": 0, "result": result})


@routes.get("/v1/sms/balance")
@_read_call
async def balance(request: web.Request, _client: Client) -> web.Response:
    reading = await request.app[GATEWAY].store.upkeep.balance()
    if reading is None:
        return Refusal(99, "Balance not known yet").response()
    return json_response({"statusID": 0, "sms": str(reading.sms)})


def _brand_item(brand: Brand) -> dict[str, str]:
    authorized = APPROVED if brand.approved else "2"  # the contract's two values: "1" approved, "2" not
    return {"id": str(brand.id), "name": brand.name, "authorized": authorized, "createdAt": brand.created_at}


@routes.get("/v1/sms/brandNames")
@_read_call
async def brand_names(request: web.Request, client: Client) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.brands.reading is None:  # not in memory yet (a gateway started before the worker's first reading)
        await gw.brands.refresh()
    reading = gw.brands.reading
    if reading is None:  # empty lists too, so a client that looks a brand up finds none rather than crashing
        message = "Brand names not read from uBill yet"
        return json_response({"statusID": 99, "message": message, "data": [], "brands": []})
    items = [_brand_item(brand) for brand in reading.brands if brand.id in client.brands]
    return json_response({"statusID": 0, "data": items, "brands": items})
