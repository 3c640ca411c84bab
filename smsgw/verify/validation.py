"""The bodies of ``POST /v1/verifications`` and ``.../check``, validated: every field error collected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smsgw.errors import Forbidden, ValidationFailed
from smsgw.phones import normalise_many
from smsgw.settings import Client, Settings
from smsgw.verify import codes, templates

__all__ = ["StartRequest", "validate_check", "validate_start"]

MIN_TTL, MAX_TTL, DEFAULT_TTL = 60, 3600, 600
MAX_REFERENCE = 128
MAX_CODE_INPUT = 64
START_FIELDS = frozenset({"to", "brand_id", "code_length", "ttl", "locale", "reference"})


@dataclass(frozen=True)
class StartRequest:
    number: str
    brand_id: int
    code_length: int
    ttl_s: int
    locale: str
    reference: str | None


def _int(
    body: dict[str, Any], name: str, default: int, low: int, high: int, errors: list[dict[str, str]]
) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append({"field": name, "message": f"must be an integer from {low} to {high}"})
        return default
    return value


def validate_start(body: Any, client: Client, settings: Settings) -> StartRequest:
    """Check a decoded JSON body against the contract; ``ValidationFailed`` (422) or ``Forbidden`` (403)."""
    if not isinstance(body, dict):
        raise ValidationFailed([{"field": "", "message": "the body must be a JSON object"}])
    errors: list[dict[str, str]] = [
        {"field": name, "message": "unknown field"} for name in sorted(set(body) - START_FIELDS)
    ]
    brand = body.get("brand_id")
    brand = client.default_brand if brand is None else brand  # null means the default, as on /v1/messages
    if brand is None:
        errors.append({"field": "brand_id", "message": "required: this client has no default brand"})
    elif isinstance(brand, bool) or not isinstance(brand, int):
        errors.append({"field": "brand_id", "message": "must be an integer"})
        brand = None
    elif brand not in client.brands:
        raise Forbidden(f"brand {brand} is not allowed for client {client.name}")
    length = _int(body, "code_length", codes.DEFAULT_LENGTH, codes.MIN_LENGTH, codes.MAX_LENGTH, errors)
    ttl = _int(body, "ttl", DEFAULT_TTL, MIN_TTL, MAX_TTL, errors)
    locale = body.get("locale", templates.DEFAULT_LOCALE)
    if locale not in templates.LOCALES:
        errors.append({"field": "locale", "message": f"must be one of {', '.join(templates.LOCALES)}"})
    reference = body.get("reference")
    if reference is not None and (not isinstance(reference, str) or len(reference) > MAX_REFERENCE):
        errors.append(
            {"field": "reference", "message": f"must be a string of at most {MAX_REFERENCE} characters"}
        )
    number = ""
    raw = body.get("to")
    if not isinstance(raw, str) or not raw.strip():
        errors.append({"field": "to", "message": "required: one phone number as a string"})
    else:
        numbers, bad = normalise_many([raw], settings.allowed_countries)
        if bad:
            errors.append({"field": "to", "message": f"{raw!r}: {bad[0].message}"})
        else:
            number = numbers[0]
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(brand, int)
    return StartRequest(number, brand, length, ttl, str(locale), reference)


def validate_check(body: Any) -> str:
    """The code a caller checks: any non-empty string up to 64 characters (a wrong one is an attempt)."""
    if not isinstance(body, dict):
        raise ValidationFailed([{"field": "", "message": "the body must be a JSON object"}])
    errors = [{"field": name, "message": "unknown field"} for name in sorted(set(body) - {"code"})]
    code = body.get("code")
    if not isinstance(code, str) or not code or len(code) > MAX_CODE_INPUT:
        errors.append({"field": "code", "message": f"required: a string of 1 to {MAX_CODE_INPUT} characters"})
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(code, str)
    return code
