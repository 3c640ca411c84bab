"""Phone numbers: normalised to uBill's form (international digits, no ``+``, no ``00``), masked for logs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

__all__ = ["NumberError", "mask", "normalise", "normalise_many"]

_FORMATTING = re.compile(r"[\s\-().\[\]/]")
_DIGITS = re.compile(r"\d{4,20}")
_LONG_DIGITS = re.compile(
    r"(?<![A-Za-z0-9_])(\d{6})(\d{2,9})(\d{3})(?![A-Za-z0-9_])"
)  # standalone digit runs


@dataclass(frozen=True)
class NumberError:
    index: int
    raw: str
    message: str


def normalise(raw: str, allowed: frozenset[str], default_region: str | None = None) -> str:
    """Return the number as uBill wants it, or raise ``ValueError`` saying what is wrong.

    Numbers without ``+``/``00`` are read as international (``995511194242``) and, failing that, as national
    numbers of ``default_region`` (``511 19 42 42`` in Georgia). The first reading that is a valid number of
    an allowed country wins: ``597 53 88 63`` is a valid Surinamese number as ``+597 538863`` but a Georgian
    mobile as a national number, and only the latter is wanted when Georgia is the allowed country.
    """
    compact = _FORMATTING.sub("", raw)
    if compact.startswith("+"):
        digits, national_region = compact[1:], None
    elif compact.startswith("00"):
        digits, national_region = compact[2:], None
    else:
        digits, national_region = compact, default_region
    if not _DIGITS.fullmatch(digits):
        raise ValueError("not a phone number")
    readings: list[tuple[str, str | None]] = [("+" + digits, None)]
    if national_region:
        readings.append((digits, national_region))
    disallowed: str | None = None
    for text, region in readings:
        parsed, country = _parse_valid(text, region)
        if parsed is None:
            continue
        if country in allowed:
            # The E.164 form without its "+": the national significant number keeps leading zeros (Italy).
            return f"{parsed.country_code}{phonenumbers.national_significant_number(parsed)}"
        disallowed = disallowed or country
    if disallowed is None:
        raise ValueError("not a valid phone number")
    raise ValueError(f"country {disallowed} is not allowed (allowed: {', '.join(sorted(allowed)) or 'none'})")


def _international(digits: str) -> phonenumbers.PhoneNumber | None:
    """International digits split at their country code without ``phonenumbers.parse`` (a third of the cost
    of a plain ``995…`` number, validated the same way afterwards); ``None`` leaves odd cases to ``parse``."""
    for length in (1, 2, 3):
        code = int(digits[:length])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            national = digits[length:]
            if len(national) < 4 or national[0] == "0":
                return None
            return phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    return None


def _parse_valid(text: str, region: str | None) -> tuple[phonenumbers.PhoneNumber | None, str]:
    """The parsed number and its region when it is valid, else ``(None, "")``.

    ``region_code_for_number`` + ``is_valid_number_for_region`` is what ``is_valid_number`` does; calling them
    here spares a second region look-up (a full pattern match per region for shared codes such as +1).
    """
    parsed = _international(text[1:]) if region is None else None
    if parsed is None:
        try:
            parsed = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            return None, ""
    country = phonenumbers.region_code_for_number(parsed)
    if country is None or not phonenumbers.is_valid_number_for_region(parsed, country):
        return None, ""
    return parsed, country


def normalise_many(raws: Iterable[str], allowed: frozenset[str]) -> tuple[list[str], list[NumberError]]:
    """Normalise a request's numbers: de-duplicated in first-seen order, every bad one reported."""
    default_region = min(allowed) if len(allowed) == 1 else None
    seen: dict[str, None] = {}
    errors: list[NumberError] = []
    for index, raw in enumerate(raws):
        try:
            seen.setdefault(normalise(raw, allowed, default_region))
        except ValueError as exc:
            errors.append(NumberError(index, raw, str(exc)))
    return list(seen), errors


def mask(text: str) -> str:
    """Mask every phone-number-looking digit run: ``995511194242`` → ``995511***242``."""
    return _LONG_DIGITS.sub(lambda m: f"{m.group(1)}***{m.group(3)}", text)
