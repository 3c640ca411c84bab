"""A uBill send call: its parameters read from wherever a client put them, and uBill's checks in order.

Parameters come from the query string, then a form or JSON body (the body wins). The key may be a ``key``
HTTP header, a body field or a query parameter. Checks run in uBill's order, so the first failing one picks
the statusID: key (HTTP 401), malformed JSON (90), brand unknown or not approved (10), numbers (20),
text (30), no valid number (50), sendTime (99), balance (40).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from aiohttp import web

from smsgw.sandbox.config import SandboxConfig
from smsgw.segments import count_segments
from smsgw.ubill import REFUSALS, parse_send_time

__all__ = [
    "BAD_SEND_TIME",
    "INVALID_KEY",
    "Accepted",
    "Refusal",
    "SendCall",
    "check",
    "key_matches",
    "read_call",
]

_VALID_NUMBER: Final = re.compile(r"^9955\d{8}$")
_FORMS: Final = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class SendCall:
    method: str
    params: Mapping[str, Any]
    key: str | None = field(default=None, repr=False)
    malformed_json: bool = False


@dataclass(frozen=True)
class Refusal:
    status_id: int
    message: str
    http_status: int = 200

    def body(self) -> dict[str, Any]:
        return {"statusID": self.status_id, "message": self.message}


@dataclass(frozen=True)
class Accepted:
    numbers: list[str]
    rejected_numbers: list[str]
    text: str
    brand_id: int
    otp: bool
    stop_list: bool
    segments: int
    send_time: str | None = None
    send_at: datetime | None = None


INVALID_KEY: Final = Refusal(99, "Invalid API key", http_status=401)
BAD_SEND_TIME: Final = Refusal(99, "sendTime must be a future time formatted Y-m-d H:i")
# Inferred: a brand pending approval cannot send, and brand problems are uBill's statusID 10.
UNAPPROVED_BRAND: Final = Refusal(10, "Brand name is not authorized yet")


def _refusal(status_id: int) -> Refusal:
    return Refusal(status_id, REFUSALS[status_id].capitalize())


async def read_call(request: web.Request) -> SendCall:
    """Gather the call's parameters; a body that is not valid JSON is remembered, not raised."""
    params: dict[str, Any] = dict(request.query)
    body: Mapping[str, Any] = {}
    malformed = False
    if request.method == "POST" and request.can_read_body:
        if request.content_type in _FORMS:
            body = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        else:
            body, malformed = _json_object(await request.read(), request.content_type)
    params.update(body)
    key = request.headers.get("key") or body.get("key") or request.query.get("key")
    return SendCall(request.method, params, key if isinstance(key, str) else None, malformed)


def _json_object(raw: bytes, content_type: str) -> tuple[Mapping[str, Any], bool]:
    """A JSON body as an object; bodies of other types are ignored unless they claim to be JSON."""
    if "json" not in content_type and not raw.lstrip().startswith((b"{", b"[")):
        return {}, False
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}, True
    return (data, False) if isinstance(data, dict) else ({}, True)


def key_matches(given: str | None, config: SandboxConfig) -> bool:
    expected = config.api_key.reveal().encode()
    return given is not None and hmac.compare_digest(given.encode(), expected)


def check(call: SendCall, config: SandboxConfig, balance: int, now: datetime) -> Refusal | Accepted:
    """uBill's checks in order; the first failing one is the answer."""
    if not key_matches(call.key, config):
        return INVALID_KEY
    if call.malformed_json:
        return _refusal(90)
    brand_id = _brand_id(call.params.get("brandID"))
    if brand_id is None or brand_id not in config.brands:
        return _refusal(10)
    if brand_id in config.unapproved_brands:
        return UNAPPROVED_BRAND
    numbers = _numbers(call.params.get("numbers"))
    if not numbers:
        return _refusal(20)
    text = call.params.get("text")
    if not isinstance(text, str) or not text.strip():
        return _refusal(30)
    valid = [n for n in numbers if _VALID_NUMBER.match(n)]
    if not valid:
        return _refusal(50)
    schedule = _schedule(call.params.get("sendTime"), now)
    if schedule is None:
        return BAD_SEND_TIME
    segments, _ = count_segments(text)
    if balance < len(valid) * segments:
        return _refusal(40)
    return Accepted(
        numbers=valid,
        rejected_numbers=[n for n in numbers if not _VALID_NUMBER.match(n)],
        text=text,
        brand_id=brand_id,
        otp=_is(call.params.get("otp"), True),
        stop_list=not _is(call.params.get("stopList"), False),
        segments=segments,
        send_time=schedule[0],
        send_at=schedule[1],
    )


def _is_int(raw: object) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool)


def _brand_id(raw: object) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    return None


def _numbers(raw: object) -> list[str]:
    """Numbers as given: a comma-separated string, or a JSON list (or single value) of numbers/strings."""
    if isinstance(raw, str):
        return [n.strip() for n in raw.split(",") if n.strip()]
    items = raw if isinstance(raw, list) else [raw] if _is_int(raw) else []
    return [text for text in (_number_text(item) for item in items) if text]


def _number_text(item: object) -> str:
    if isinstance(item, str):
        return item.strip()
    if _is_int(item):
        return str(item)
    return json.dumps(item)  # kept (and rejected) so the send record shows what came


def _is(raw: object, value: bool) -> bool:
    """uBill's flags: ``otp=true`` and ``stopList=false`` are the only spellings that change anything."""
    return raw is value or (isinstance(raw, str) and raw.strip().lower() == str(value).lower())


def _schedule(raw: object, now: datetime) -> tuple[str | None, datetime | None] | None:
    """sendTime as given and as UTC; (None, None) when absent, None when malformed or not in the future."""
    if raw is None or raw == "":
        return None, None
    if not isinstance(raw, str):
        return None
    try:
        moment = parse_send_time(raw.strip())
    except ValueError:
        return None
    return (raw.strip(), moment) if moment > now else None
