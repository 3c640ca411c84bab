"""Recipient statuses, their order, and how uBill's status codes map onto them.

A recipient only moves forward in ``RANK`` (the Lua scripts enforce the same table), except for the worker's
own retry path (dispatching → queued) and an unknown outcome being settled. Terminal statuses never change.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CALLBACK_STATUS", "RANK", "STATUSES", "TERMINAL", "to_ubill_code"]

SCHEDULED: Final = "scheduled"
QUEUED: Final = "queued"
DISPATCHING: Final = "dispatching"
UNKNOWN: Final = "unknown"
SUBMITTED: Final = "submitted"
SENT: Final = "sent"
PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
ERROR: Final = "error"
REJECTED: Final = "rejected"
EXPIRED: Final = "expired"
CANCELLED: Final = "cancelled"

STATUSES: tuple[str, ...] = (
    SCHEDULED,
    QUEUED,
    DISPATCHING,
    SUBMITTED,
    SENT,
    PENDING,
    DELIVERED,
    FAILED,
    ERROR,
    REJECTED,
    EXPIRED,
    CANCELLED,
    UNKNOWN,
)
TERMINAL: frozenset[str] = frozenset({DELIVERED, FAILED, ERROR, REJECTED, EXPIRED, CANCELLED})

# Keep in step with smsgw/lua/_lib.lua (rank table).
RANK: dict[str, int] = {
    SCHEDULED: 0,
    QUEUED: 1,
    DISPATCHING: 2,
    UNKNOWN: 3,
    SUBMITTED: 4,
    SENT: 5,
    PENDING: 6,
    DELIVERED: 9,
    FAILED: 9,
    ERROR: 9,
    REJECTED: 9,
    EXPIRED: 9,
    CANCELLED: 9,
}

# uBill callback/report statusID -> our status (0 sent, 1 delivered, 2 failed, 3 pending, 4 error).
CALLBACK_STATUS: dict[int, str] = {0: SENT, 1: DELIVERED, 2: FAILED, 3: PENDING, 4: ERROR}

_TO_UBILL: dict[str, int] = {
    SENT: 0,
    DELIVERED: 1,
    FAILED: 2,
    PENDING: 3,
    ERROR: 4,
    # Not yet with the operator: uBill would still call these pending.
    SCHEDULED: 3,
    QUEUED: 3,
    DISPATCHING: 3,
    SUBMITTED: 3,
    UNKNOWN: 3,
    # Never handed to an operator: failed from a uBill client's point of view.
    REJECTED: 2,
    EXPIRED: 2,
    CANCELLED: 2,
}


def to_ubill_code(status: str) -> int:
    """The uBill report code a uBill client library expects for one of our statuses (facade reports)."""
    return _TO_UBILL[status]
