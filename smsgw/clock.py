"""Time as the contract writes it: RFC 3339 in UTC with a ``Z``, milliseconds since the epoch in Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["iso", "now_ms", "parse_rfc3339"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """``2026-11-25T23:36:45.123Z`` (fast: called once per recipient when a message is read)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def parse_rfc3339(raw: str) -> datetime:
    """An aware datetime; ``ValueError`` when the text is not RFC 3339 or has no offset."""
    if "T" not in raw.upper():
        raise ValueError("expected an RFC 3339 date-time such as 2026-01-31T09:00:00Z")
    moment = datetime.fromisoformat(raw)
    if moment.tzinfo is None:
        raise ValueError("needs an offset (e.g. Z or +04:00)")
    return moment.astimezone(UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
