"""The send request of the contract, validated: every field error collected, permissions answered 403."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from smsgw.clock import parse_rfc3339, to_ms
from smsgw.command import (
    DEFAULT_VALIDITY,
    MAX_OTP_RECIPIENTS,
    MAX_RECIPIENTS,
    MAX_REFERENCE,
    MAX_TEXT,
    MAX_VALIDITY,
    SendCommand,
    schedule_problem,
)
from smsgw.errors import Forbidden, ValidationFailed
from smsgw.phones import normalise_many
from smsgw.settings import LANES, Client, Settings

__all__ = ["validate_send"]

FIELDS = frozenset({"to", "text", "brand_id", "priority", "send_at", "validity", "stop_list", "reference"})


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})


def validate_send(
    body: Any,
    client: Client,
    settings: Settings,
    now: datetime,
    brand_refusal: Callable[[int], str | None] | None = None,
) -> SendCommand:
    """Check a decoded JSON body against the contract; raises ``ValidationFailed`` or ``Forbidden``.

    ``brand_refusal`` says why uBill would refuse a brand (unknown, not approved), from memory."""
    if not isinstance(body, dict):
        raise ValidationFailed([{"field": "", "message": "the body must be a JSON object"}])
    errors = _Errors()
    for name in sorted(set(body) - FIELDS):
        errors.add(name, "unknown field")
    lane = _lane(body.get("priority", "transactional"), errors)
    brand_id = _brand(body.get("brand_id"), client, errors)
    _check_permissions(client, lane, brand_id)
    if brand_id is not None and brand_refusal is not None and (problem := brand_refusal(brand_id)):
        errors.add("brand_id", problem)
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
    return SendCommand(tuple(numbers), text, brand_id, lane, send_at, validity, stop_list, reference)


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
    problem = schedule_problem(to_ms(moment), to_ms(now))
    if problem:
        errors.add("send_at", problem)
    return to_ms(moment)


def _validity(value: Any, lane: str | None, errors: _Errors) -> int:
    default = DEFAULT_VALIDITY[lane or "transactional"]
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
