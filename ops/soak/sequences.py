"""Event sequences: each recipient's events must go forward, once each, and end at its resource's status.

The contract's order is forward only, except the worker's own retry path (``dispatching -> queued``) and an
``unknown`` being settled. The initial ``queued``/``scheduled`` is not an event (the 202 is), so a sequence is
checked as if it started there.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ops.soak.verdict import Verdict

__all__ = ["EVENT_FIELDS", "RANK", "TERMINAL", "check_events", "forward"]

TERMINAL: Final = frozenset({"delivered", "failed", "error", "rejected", "expired", "cancelled"})
RANK: Final = {
    "scheduled": 0,
    "queued": 1,
    "dispatching": 2,
    "unknown": 3,
    "submitted": 4,
    "sent": 5,
    "pending": 6,
    **dict.fromkeys(TERMINAL, 7),
}
EVENT_FIELDS: Final = (
    "message_id",
    "client",
    "reference",
    "number",
    "status",
    "provider_sms_id",
    "provider_status_id",
    "occurred_at",
)


def forward(before: str, after: str) -> bool:
    """The contract's order: forward only, except the worker's retry path and an ``unknown`` being settled."""
    if before in TERMINAL or after == before:
        return False
    if before == "unknown" or (before == "dispatching" and after == "queued"):
        return True
    return RANK.get(after, -1) > RANK.get(before, 99)


def order_problem(chain: Sequence[str]) -> str:
    for before, after in itertools.pairwise(chain):
        if not forward(before, after):
            if before == after:
                return f"duplicate event {after}"
            if before in TERMINAL:
                return f"event {after} after terminal {before}"
            return f"backward event {before} -> {after}"
    return "out of order"


def check_events(
    message_id: str,
    message: dict[str, Any],
    events_of: Mapping[tuple[str, str], list[dict[str, Any]]],
    verdict: Verdict,
    kinds: set[str],
    seen: set[tuple[str, str]],
) -> None:
    """Count one message's recipients whose event sequence has extra events or misses its last change."""
    initial = "scheduled" if message.get("send_at") else "queued"
    for recipient in message.get("recipients", []):
        number = str(recipient.get("number"))
        key = (message_id, number)
        seen.add(key)
        events = events_of.get(key, [])
        chain = [initial] + [str(e.get("status")) for e in events]
        where = f"{message_id} {number}: resource {recipient.get('status')}, events {chain[1:]}"
        kept = forward_chain(chain)  # the events that moved the recipient on; the others are extra
        malformed = any(any(f not in e for f in EVENT_FIELDS) for e in events)
        if malformed:
            verdict.add(kinds, "events_extra", "an event without the contract's fields", where)
        elif len(kept) < len(chain):
            verdict.add(kinds, "events_extra", order_problem(chain), where)
        status = str(recipient.get("status"))
        if kept[-1] != status:
            behind = RANK.get(status, 0) > RANK.get(kept[-1], 0) or status == "unknown"
            if behind or (status, kept[-1]) == ("queued", "dispatching"):
                verdict.add(kinds, "events_missing", f"no event for {kept[-1]} -> {status}", where)
            elif len(kept) == len(chain):
                verdict.add(kinds, "events_extra", f"last event {kept[-1]}, resource {status}", where)


def forward_chain(chain: Sequence[str]) -> list[str]:
    kept = [chain[0]]
    for status in chain[1:]:
        if forward(kept[-1], status):
            kept.append(status)
    return kept
