"""The worker's background duties: job leases, uBill balance, report reconciliation, scrape-time gauges.

Periodic duties that need only one runner across all workers (balance, reconciliation) take a Redis lock
for their interval; every process still reads the shared results so its metrics agree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from redis.asyncio import Redis

from smsgw import keys
from smsgw.clock import now_ms
from smsgw.delivery import apply_provider_status
from smsgw.errors import ProviderError
from smsgw.lua import Scripts
from smsgw.metrics import WorkerMetrics
from smsgw.records import Recipient
from smsgw.redisdb import REDIS_ERRORS, hash_fields
from smsgw.settings import LANES, Settings
from smsgw.statuses import TERMINAL
from smsgw.ubill import UbillClient
from smsgw.worker import balance
from smsgw.worker.lanes import LaneWorker

__all__ = ["balance_poller", "lease_heartbeat", "reconciler", "refresh_gauges"]

log = structlog.get_logger(__name__)
RECONCILE_BATCH = 50
RECONCILE_GIVE_UP_MS = 2 * 86_400_000  # after two days a missing final status will not come


async def every(interval: float, duty: Callable[[], Awaitable[None]], name: str) -> None:
    """Run ``duty`` forever, ``interval`` apart; a failure is logged and the next round goes on."""
    while True:
        try:
            await duty()
        except REDIS_ERRORS as exc:
            log.warning(f"{name}.redis_unavailable", error=type(exc).__name__)
        except Exception:
            log.exception(f"{name}.failed")
        await asyncio.sleep(interval)


async def take_turn(redis: Redis, name: str, seconds: float) -> bool:
    """True for one worker per interval."""
    return bool(await redis.set(keys.lock(name), "1", nx=True, px=max(1, int(seconds * 1000 * 0.9))))


def lease_heartbeat(
    pool: Redis, workers: Sequence[LaneWorker], lease: float
) -> Callable[[], Awaitable[None]]:
    async def beat() -> None:
        ids = [job_id for worker in workers for job_id in worker.running_job_ids]
        if ids:
            async with pool.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.pexpire(keys.in_progress(job_id), int(lease * 1000))
                await pipe.execute()

    return beat


def balance_poller(
    redis: Redis, ubill: UbillClient, metrics: WorkerMetrics, interval: float
) -> Callable[[], Awaitable[None]]:
    return balance.poller(redis, ubill, metrics, interval)


def reconciler(
    redis: Redis, scripts: Scripts, ubill: UbillClient, settings: Settings, metrics: WorkerMetrics
) -> Callable[[], Awaitable[None]]:
    """Ask uBill's report for units whose callbacks did not all come within ``reconcile_after``."""

    async def reconcile() -> None:
        if not await take_turn(redis, "reconcile", settings.reconcile_interval):
            return
        cutoff = now_ms() - int(settings.reconcile_after * 1000)
        units = await redis.zrangebyscore(
            keys.AWAITING, "-inf", cutoff, start=0, num=RECONCILE_BATCH, withscores=True
        )
        for unit_id, acked_ms in units:
            await _reconcile_unit(unit_id, int(acked_ms))

    async def _reconcile_unit(unit_id: str, acked_ms: int) -> None:
        message_id, _, k = unit_id.rpartition(":")
        fields = await hash_fields(redis, keys.message(message_id))
        unit = fields.get(f"u:{k}", "")
        numbers = fields.get(f"n:{k}", "").split(",") if unit else []
        sms_id = unit.split("|")[2] if unit else ""
        if not sms_id or _settled(fields, numbers) or now_ms() - acked_ms > RECONCILE_GIVE_UP_MS:
            await redis.zrem(keys.AWAITING, unit_id)
            return
        started = time.perf_counter()
        try:
            lines = await ubill.report(sms_id)
        except ProviderError as exc:
            metrics.ubill_requests.labels("report", exc.outcome).inc()
            return
        finally:
            metrics.ubill_duration.labels("report").observe(time.perf_counter() - started)
        metrics.ubill_requests.labels("report", "accepted").inc()
        for number, code in lines:
            if number in numbers and code in (0, 1, 2, 3, 4):
                await apply_provider_status(scripts, settings, sms_id, number, code, now_ms())
        fields = await hash_fields(redis, keys.message(message_id))
        if _settled(fields, numbers):
            await redis.zrem(keys.AWAITING, unit_id)
        else:
            await redis.zadd(keys.AWAITING, {unit_id: now_ms()})

    return reconcile


def _settled(fields: dict[str, str], numbers: list[str]) -> bool:
    return all(
        f"r:{n}" not in fields or Recipient.parse(n, fields[f"r:{n}"]).status in TERMINAL for n in numbers
    )


def refresh_gauges(redis: Redis, metrics: WorkerMetrics) -> Callable[[], Awaitable[None]]:
    """Queue depth and age per lane, dead letters, orphans: a handful of O(log n) reads per scrape."""

    async def refresh() -> None:
        now = now_ms()
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for lane in LANES:
                    queue = keys.lane_queue(lane)
                    pipe.zcount(queue, "-inf", now)
                    pipe.zcount(queue, f"({now}", "+inf")
                    pipe.zrangebyscore(queue, "-inf", now, start=0, num=1, withscores=True)
                pipe.zcard(keys.DEAD)
                pipe.zremrangebyscore(keys.ORPHANS, "-inf", now)
                pipe.zcard(keys.ORPHANS)
                results = await pipe.execute()
        except REDIS_ERRORS:
            return
        for i, lane in enumerate(LANES):
            due, scheduled, oldest = results[3 * i : 3 * i + 3]
            metrics.queue_units.labels(lane).set(due)
            metrics.queue_scheduled.labels(lane).set(scheduled)
            metrics.queue_oldest_age.labels(lane).set(
                max(0.0, (now - oldest[0][1]) / 1000) if oldest else 0.0
            )
        metrics.dead_letter_units.set(results[-3])
        metrics.orphan_callbacks.set(results[-1])

    return refresh
