"""Status events as consumers see them: the payload's fields and how long streams keep them.

Events are produced inside the Lua scripts (``lua/_lib.lua``: ``emit``), so a status change and its event are
one atomic write; this module holds what Python needs around them.
"""

from __future__ import annotations

__all__ = ["EVENT_FIELDS", "sse_frame", "stream_minid"]

# The contract's event object, in its order.
EVENT_FIELDS = (
    "message_id",
    "client",
    "reference",
    "number",
    "status",
    "provider_sms_id",
    "provider_status_id",
    "occurred_at",
)


def stream_minid(now_ms: int, retention_s: int) -> str:
    """Oldest stream id to keep: housekeeping's XTRIM ... MINID ~ drops whole stream nodes older than it."""
    return f"{max(0, now_ms - retention_s * 1000)}-0"


def sse_frame(event_id: str, data: str, event: str = "status") -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()
