"""Time as the contract writes it: RFC 3339 in UTC with a ``Z``, milliseconds since the epoch in Redis."""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime

__all__ = ["iso", "now_ms", "parse_rfc3339"]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?$")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """``2026-11-25T23:36:45.123Z`` (on every answer and event: the formatted second is cached)."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=256)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def parse_rfc3339(raw: str) -> datetime:
    """An aware datetime; ``ValueError`` when the text is not RFC 3339 or has no offset."""
    if _LOCAL.match(raw):
        raise ValueError("needs an offset (e.g. Z or +04:00)")
    if not _RFC3339.match(raw):
        raise ValueError("expected an RFC 3339 date-time such as 2026-01-31T09:00:00Z")
    try:
        return datetime.fromisoformat(raw.upper().replace("Z", "+00:00")).astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first representable UTC instant
        raise ValueError("out of range") from None


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
