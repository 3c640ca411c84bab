"""Apply a provider delivery status (a callback, or a line of uBill's report) to our records.

Shared by the gateway's callback endpoint and the worker's report reconciliation: both go through the same
script (``lua/callback.lua``), so the state machine (terminal never regresses, duplicates harmless, orphans
kept, foreign smsIDs change nothing) is one piece.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from smsgw.clock import iso, now_ms
from smsgw.store.batching import ScriptBatcher
from smsgw.store.connection import translated
from smsgw.store.scripts import Scripts
from smsgw.store.statuses import CALLBACK_STATUS

__all__ = ["Applied", "Deliveries"]


@dataclass(frozen=True)
class Applied:
    outcome: str  # applied | duplicate | ignored | adopted | orphaned
    status: str
    lane: str
    created_ms: int | None
    # False when WAIT (SMSGW_REDIS_WAIT_REPLICAS) did not confirm it on the replicas: the callback is answered
    # 503, so uBill sends it again rather than a failover losing a status uBill will not repeat.
    replicated: bool = True


class Deliveries:
    def __init__(
        self,
        redis: Redis,
        scripts: Scripts,
        *,
        orphan_ttl: int,
        reconcile_after: float,
        wait: tuple[int, int] | None = None,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        # A callback flood: concurrent callbacks share pipelines (batching.py; WAIT ends each if set).
        self._callback = ScriptBatcher(redis, scripts.callback, wait=wait)
        self._wait_replicas = wait[0] if wait else 0
        self._orphan_ttl = orphan_ttl
        self._reconcile_after_ms = int(reconcile_after * 1000)

    async def apply(self, sms_id: str, number: str, status_id: int, occurred_ms: int) -> Applied:
        status = CALLBACK_STATUS[status_id]
        now = now_ms()
        with translated():
            result, replicas = await self._callback(
                [],
                [
                    sms_id,
                    number,
                    status,
                    status_id,
                    iso(occurred_ms),
                    now,
                    self._orphan_ttl,
                    occurred_ms,
                    now + self._reconcile_after_ms,
                    "1" if self._wait_replicas else "",
                ],
            )
        created = int(result[2]) if result[2] else None
        replicated = replicas is None or replicas >= self._wait_replicas
        return Applied(str(result[0]), status, str(result[1]), created, replicated)
