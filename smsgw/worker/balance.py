"""uBill's balance: one worker reads it per interval, every worker exports the shared reading.

The reading (``{"sms": N, "at": ms}``) lives in Redis so all workers, and the facade's ``/v1/sms/balance``,
agree. A worker exports it only once a reading exists (``UbillBalance``): before the first successful call,
with polling off, or while every call fails, the balance is unknown, not zero.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

import structlog
from redis.asyncio import Redis

from smsgw import keys
from smsgw.clock import now_ms
from smsgw.errors import ProviderError
from smsgw.metrics import WorkerMetrics
from smsgw.ubill import UbillClient

__all__ = ["poller", "reading"]

log = structlog.get_logger(__name__)


def poller(
    redis: Redis, ubill: UbillClient, metrics: WorkerMetrics, interval: float
) -> Callable[[], Awaitable[None]]:
    """One round: ask uBill if it is this worker's turn, then export the shared reading if there is one."""

    async def poll() -> None:
        if await _take_turn(redis, interval):
            await _ask_ubill(redis, ubill, metrics)
        current = reading(await redis.get(keys.BALANCE))
        if current is not None:
            metrics.balance.set(current[0], current[1] / 1000)

    return poll


def reading(raw: str | bytes | None) -> tuple[int, int] | None:
    """``(sms, at_ms)`` of a stored reading; None when there is none or it cannot be read."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return int(data["sms"]), int(data["at"])
    except (ValueError, TypeError, KeyError):
        return None


async def _take_turn(redis: Redis, interval: float) -> bool:
    """True for one worker per interval (the lock outlives the round by a little less than the interval)."""
    return bool(await redis.set(keys.lock("balance"), "1", nx=True, px=max(1, int(interval * 900))))


async def _ask_ubill(redis: Redis, ubill: UbillClient, metrics: WorkerMetrics) -> None:
    started = time.perf_counter()
    try:
        sms = await ubill.balance()
    except ProviderError as exc:
        metrics.ubill_requests.labels("balance", exc.outcome).inc()
        log.warning("balance.failed", reason=str(exc))
    else:
        metrics.ubill_requests.labels("balance", "accepted").inc()
        await redis.set(keys.BALANCE, json.dumps({"sms": sms, "at": now_ms()}))
    finally:
        metrics.ubill_duration.labels("balance").observe(time.perf_counter() - started)
