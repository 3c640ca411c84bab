"""Apply a provider delivery status (a callback, or a line of uBill's report) to our records.

Shared by the gateway's callback endpoint and the worker's report reconciliation: both go through the same
Lua script, so the state machine (terminal never regresses, duplicates harmless, orphans kept) is one piece.
"""

from __future__ import annotations

from dataclasses import dataclass

from smsgw import keys
from smsgw.clock import iso, now_ms
from smsgw.events import stream_minid
from smsgw.lua import Scripts
from smsgw.settings import Settings
from smsgw.statuses import CALLBACK_STATUS

__all__ = ["Applied", "apply_provider_status"]


@dataclass(frozen=True)
class Applied:
    outcome: str  # applied | duplicate | ignored | adopted | orphaned
    status: str
    lane: str
    created_ms: int | None


async def apply_provider_status(
    scripts: Scripts, settings: Settings, sms_id: str, number: str, status_id: int, occurred_ms: int
) -> Applied:
    status = CALLBACK_STATUS[status_id]
    now = now_ms()
    result = await scripts.callback(
        keys=[keys.sms(sms_id)],
        args=[
            sms_id,
            number,
            status,
            status_id,
            iso(occurred_ms),
            now,
            stream_minid(now, settings.events_retention),
            settings.orphan_ttl,
            keys.SMS_ID_TTL,
        ],
    )
    created = int(result[2]) if result[2] else None
    return Applied(str(result[0]), status, str(result[1]), created)
