"""Recipient and unit states, their order, and how uBill's status codes map onto them.

A recipient only moves forward in ``RANK`` (the scripts get the same table through the generated prelude),
except for the worker's own retry path (dispatching → queued) and an unknown outcome being settled. Terminal
statuses never change. Units have their own small state machine (``UNIT_*``), documented in ``records.Unit``.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CALLBACK_STATUS",
    "RANK",
    "STATUSES",
    "TERMINAL",
    "to_ubill_code",
]

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

TERMINAL_RANK: Final = 9
RANK: Final[dict[str, int]] = {
    SCHEDULED: 0,
    QUEUED: 1,
    DISPATCHING: 2,
    UNKNOWN: 3,
    SUBMITTED: 4,
    SENT: 5,
    PENDING: 6,
    DELIVERED: TERMINAL_RANK,
    FAILED: TERMINAL_RANK,
    ERROR: TERMINAL_RANK,
    REJECTED: TERMINAL_RANK,
    EXPIRED: TERMINAL_RANK,
    CANCELLED: TERMINAL_RANK,
}
STATUSES: Final[tuple[str, ...]] = tuple(RANK)
TERMINAL: Final[frozenset[str]] = frozenset(s for s, r in RANK.items() if r == TERMINAL_RANK)
WAITING: Final[frozenset[str]] = frozenset({SCHEDULED, QUEUED})  # not handed to uBill: cancellable

# Unit states: new → calling → acked | refused | unknown | dead, or done (nothing left to send), or
# replayed:{id} (a dead letter sent again as a new message).
UNIT_NEW: Final = "new"
UNIT_CALLING: Final = "calling"
UNIT_ACKED: Final = "acked"
UNIT_REFUSED: Final = "refused"
UNIT_UNKNOWN: Final = "unknown"
UNIT_DEAD: Final = "dead"
UNIT_DONE: Final = "done"

# uBill callback/report statusID -> our status (0 sent, 1 delivered, 2 failed, 3 pending, 4 error).
CALLBACK_STATUS: Final[dict[int, str]] = {0: SENT, 1: DELIVERED, 2: FAILED, 3: PENDING, 4: ERROR}

_TO_UBILL: Final[dict[str, int]] = {
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
