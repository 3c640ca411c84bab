"""The uBill-compatible facade: ``/v1/sms/send``, ``/v1/sms/report/{smsID}``, ``/v1/sms/balance``.

An unmodified uBill client switches by changing its base URL: the gateway token goes where it puts uBill's key
(``key`` query parameter, form/JSON field or header). Answers keep uBill's shapes and statusIDs; the work is
queued, prioritised, retried and tracked like any ``POST /v1/messages``. Like uBill, invalid numbers are
dropped from a call rather than failing it; only a call with no valid number is refused (statusID 50).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from smsgw import keys
from smsgw.errors import ProblemError, TooManyRequests
from smsgw.gateway.context import CLIENT, GATEWAY, MESSAGE_ID, REDIS_ERROR
from smsgw.gateway.jsonio import json_response, loads
from smsgw.gateway.ratelimit import enforce_client_rate
from smsgw.gateway.submit import submit
from smsgw.gateway.validation import MAX_OTP_RECIPIENTS, MAX_RECIPIENTS, MAX_TEXT, SendRequest
from smsgw.phones import normalise_many
from smsgw.records import Recipient, numbers_in_order
from smsgw.redisdb import REDIS_ERRORS, hash_fields
from smsgw.settings import DEFAULT_VALIDITY_OTHER, DEFAULT_VALIDITY_OTP, MAX_BODY_BYTES, Client
from smsgw.statuses import to_ubill_code
from smsgw.ubill import parse_send_time
from smsgw.verify.sealing import is_sealed_text

__all__ = ["routes"]

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


async def _client(request: web.Request, params: dict[str, Any]) -> Client:
    gw = request.app[GATEWAY]
    header = request.headers.get("Authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
    token = bearer or request.headers.get("key") or params.get("key")
    client = gw.auth.identify(token if isinstance(token, str) else None)
    if client is None:
        raise Refusal(99, "Invalid API key", 401)
    request[CLIENT] = client
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


def _send_request(request: web.Request, client: Client, params: dict[str, Any]) -> SendRequest:
    settings = request.app[GATEWAY].settings
    brand = params.get("brandID")
    try:
        brand_id = int(brand) if brand not in (None, "") else client.default_brand
    except (TypeError, ValueError):
        brand_id = None
    if brand_id is None or brand_id not in client.brands:
        raise Refusal(10, "Brand not found")
    raws = _numbers(params.get("numbers"))
    if not raws:
        raise Refusal(20, "Numbers not found")
    text = params.get("text")
    if not isinstance(text, str) or not text.strip() or is_sealed_text(text):
        raise Refusal(30, "Text is empty")
    if len(text) > MAX_TEXT or len(raws) > MAX_RECIPIENTS:
        raise Refusal(99, f"at most {MAX_TEXT} characters and {MAX_RECIPIENTS} numbers")
    numbers, _ = normalise_many(raws, settings.allowed_countries)
    if not numbers:
        raise Refusal(50, "No valid numbers")
    otp = _flag(params.get("otp"), False)
    if otp and (not client.otp or len(numbers) > MAX_OTP_RECIPIENTS):
        raise Refusal(99, f"otp needs OTP permission and at most {MAX_OTP_RECIPIENTS} numbers")
    send_at = _send_time(params.get("sendTime"))
    return SendRequest(
        numbers=numbers,
        text=text,
        brand_id=brand_id,
        lane="otp" if otp else "transactional",
        send_at_ms=send_at,
        validity_s=DEFAULT_VALIDITY_OTP if otp else DEFAULT_VALIDITY_OTHER,
        stop_list=_flag(params.get("stopList"), True),
        reference=None,
    )


def _send_time(raw: Any) -> int | None:
    if raw in (None, ""):
        return None
    try:
        moment = parse_send_time(str(raw))
    except ValueError:
        raise Refusal(99, "sendTime must be Y-m-d H:i") from None
    now = datetime.now(UTC)
    if moment <= now or moment - now > timedelta(days=30):
        raise Refusal(99, "sendTime must be in the future (at most 30 days ahead)")
    return int(moment.timestamp() * 1000)


@routes.route("*", "/v1/sms/send")
async def send(request: web.Request) -> web.Response:
    if request.method not in ("GET", "POST"):
        return Refusal(99, "Method not allowed", 405).response({"Allow": "GET, POST"})
    try:
        params = await _params(request)
        client = await _client(request, params)
        done = await submit(request.app[GATEWAY], client, _send_request(request, client, params), facade=True)
    except Refusal as refusal:
        retry = {"Retry-After": "1"} if refusal.http_status == 429 else None
        return refusal.response(retry)
    except ProblemError as problem:
        return Refusal(99, problem.detail, problem.status).response(problem.headers)
    except REDIS_ERRORS:
        request[REDIS_ERROR] = True
        return Refusal(99, "Service unavailable, nothing was accepted", 503).response({"Retry-After": "1"})
    request[MESSAGE_ID] = done.message.id
    return json_response({"statusID": 0, "smsID": done.facade_id, "message": "Success"})


@routes.get("/v1/sms/report/{sms_id}")
async def report(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    try:
        client = await _client(request, dict(request.query))
    except Refusal as refusal:
        return refusal.response()
    sms_id = request.match_info["sms_id"]
    message_id = await gw.redis.get(keys.facade(sms_id)) if sms_id.isdigit() else None
    fields = await hash_fields(gw.redis, keys.message(message_id)) if message_id else {}
    if not fields or fields.get("c") != client.name:
        return Refusal(99, "SMS not found").response()
    result = [
        {"number": n, "statusID": str(to_ubill_code(Recipient.parse(n, fields[f"r:{n}"]).status))}
        for n in numbers_in_order(fields)
    ]
    return json_response({"statusID": 0, "result": result})


@routes.get("/v1/sms/balance")
async def balance(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    try:
        await _client(request, dict(request.query))
    except Refusal as refusal:
        return refusal.response()
    raw = await gw.redis.get(keys.BALANCE)
    if not raw:
        return Refusal(99, "Balance not known yet").response()
    return json_response({"statusID": 0, "sms": str(json.loads(raw)["sms"])})
