"""The send request of the contract, validated: every field error collected, permissions answered 403."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from smsgw.clock import parse_rfc3339, to_ms
from smsgw.errors import Forbidden, ValidationFailed
from smsgw.phones import normalise_many
from smsgw.settings import DEFAULT_VALIDITY_OTHER, DEFAULT_VALIDITY_OTP, LANES, Client, Settings
from smsgw.verify.sealing import is_sealed_text

__all__ = ["SendRequest", "validate_send"]

MAX_RECIPIENTS = 10_000
MAX_OTP_RECIPIENTS = 10
MAX_TEXT = 1_600
MAX_REFERENCE = 128
MAX_SCHEDULE_AHEAD = timedelta(days=30)
MAX_VALIDITY = 30 * 86_400
FIELDS = frozenset({"to", "text", "brand_id", "priority", "send_at", "validity", "stop_list", "reference"})


@dataclass(frozen=True)
class SendRequest:
    numbers: list[str]
    text: str
    brand_id: int
    lane: str
    send_at_ms: int | None
    validity_s: int
    stop_list: bool
    reference: str | None
    # The text as stored when it must not be stored in clear (a verification code): sealed, opened by the
    # worker right before the uBill call (smsgw/verify/sealing.py). ``text`` then only counts segments.
    sealed_text: str | None = None


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})


def validate_send(body: Any, client: Client, settings: Settings, now: datetime) -> SendRequest:
    """Check a decoded JSON body against the contract; raises ``ValidationFailed`` or ``Forbidden``."""
    if not isinstance(body, dict):
        raise ValidationFailed([{"field": "", "message": "the body must be a JSON object"}])
    errors = _Errors()
    for name in sorted(set(body) - FIELDS):
        errors.add(name, "unknown field")
    lane = _lane(body.get("priority", "transactional"), errors)
    brand_id = _brand(body.get("brand_id"), client, errors)
    _check_permissions(client, lane, brand_id)
    text = _text(body.get("text"), errors)
    send_at = _send_at(body.get("send_at"), now, errors)
    validity = _validity(body.get("validity"), lane, errors)
    stop_list = _bool(body.get("stop_list", True), "stop_list", errors)
    reference = _reference(body.get("reference"), errors)
    numbers = _numbers(body.get("to"), settings.allowed_countries, errors)
    if lane == "otp" and len(numbers) > MAX_OTP_RECIPIENTS:
        errors.add("to", f"an otp message goes to at most {MAX_OTP_RECIPIENTS} numbers, got {len(numbers)}")
    if errors.items:
        raise ValidationFailed(errors.items)
    assert brand_id is not None
    assert lane is not None
    assert text is not None
    return SendRequest(numbers, text, brand_id, lane, send_at, validity, stop_list, reference)


def _check_permissions(client: Client, lane: str | None, brand_id: int | None) -> None:
    if brand_id is not None and brand_id not in client.brands:
        raise Forbidden(f"brand {brand_id} is not allowed for client {client.name}")
    if lane == "otp" and not client.otp:
        raise Forbidden(f"client {client.name} may not send otp messages")


def _lane(value: Any, errors: _Errors) -> str | None:
    if value in LANES:
        return str(value)
    errors.add("priority", f"must be one of {', '.join(LANES)}")
    return None


def _brand(value: Any, client: Client, errors: _Errors) -> int | None:
    if value is None:
        if client.default_brand is None:
            errors.add("brand_id", "required: this client has no default brand")
        return client.default_brand
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add("brand_id", "must be an integer")
        return None
    return value


def _text(value: Any, errors: _Errors) -> str | None:
    if not isinstance(value, str):
        errors.add("text", "required: a string")
        return None
    if not value.strip():
        errors.add("text", "must not be blank")
    elif len(value) > MAX_TEXT:
        errors.add("text", f"at most {MAX_TEXT} characters, got {len(value)}")
    elif is_sealed_text(value):
        errors.add("text", "must not start with a NUL character followed by the gateway's sealed-text marker")
    return value


def _send_at(value: Any, now: datetime, errors: _Errors) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add("send_at", "must be an RFC 3339 date-time string")
        return None
    try:
        moment = parse_rfc3339(value)
    except ValueError as exc:
        reason = str(exc) if "offset" in str(exc) else "must be an RFC 3339 date-time with offset"
        errors.add("send_at", reason)
        return None
    if moment <= now:
        errors.add("send_at", "must be in the future")
    elif moment - now > MAX_SCHEDULE_AHEAD:
        errors.add("send_at", "must be at most 30 days ahead")
    return to_ms(moment)


def _validity(value: Any, lane: str | None, errors: _Errors) -> int:
    default = DEFAULT_VALIDITY_OTP if lane == "otp" else DEFAULT_VALIDITY_OTHER
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VALIDITY:
        errors.add("validity", f"must be an integer number of seconds between 1 and {MAX_VALIDITY}")
        return default
    return value


def _bool(value: Any, field: str, errors: _Errors) -> bool:
    if not isinstance(value, bool):
        errors.add(field, "must be true or false")
        return True
    return value


def _reference(value: Any, errors: _Errors) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_REFERENCE:
        errors.add("reference", f"must be a string of at most {MAX_REFERENCE} characters")
        return None
    return value


def _numbers(value: Any, allowed: frozenset[str], errors: _Errors) -> list[str]:
    raws = [value] if isinstance(value, str) else value
    if not isinstance(raws, list) or not raws:
        errors.add("to", "required: a phone number or a list of 1 to 10,000 phone numbers")
        return []
    if len(raws) > MAX_RECIPIENTS:
        errors.add("to", f"at most {MAX_RECIPIENTS} numbers, got {len(raws)}")
        return []
    strings = []
    for index, raw in enumerate(raws):
        if isinstance(raw, str):
            strings.append((index, raw))
        else:
            errors.add(f"to[{index}]", "must be a string")
    numbers, bad = normalise_many((raw for _, raw in strings), allowed)
    for problem in bad:
        field = "to" if isinstance(value, str) else f"to[{strings[problem.index][0]}]"
        errors.add(field, f"{problem.raw!r}: {problem.message}")
    return numbers
