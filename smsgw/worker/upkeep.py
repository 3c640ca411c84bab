"""The worker's background duties: heartbeat (liveness and leases), housekeeping, uBill balance, gauges.

Duties that need only one runner across all workers (housekeeping, balance) take a leader lock for their
interval; every process still reads the shared results so its metrics agree. None of them depends on anyone
scraping ``/metrics``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from smsgw.errors import StoreUnavailable
from smsgw.metrics import WorkerMetrics
from smsgw.settings import LANES, Settings
from smsgw.store.dispatch import Dispatch
from smsgw.store.upkeep import Upkeep
from smsgw.ubill import UbillClient
from smsgw.worker import balance
from smsgw.worker.lanes import Lane

__all__ = ["balance_poller", "every", "heartbeat", "housekeeping", "refresh_gauges"]

log = structlog.get_logger(__name__)
Duty = Callable[[], Awaitable[None]]


async def every(interval: float, duty: Duty, name: str) -> None:
    """Run ``duty`` forever, ``interval`` apart; a failure is logged and the next round goes on."""
    while True:
        try:
            await duty()
        except StoreUnavailable as exc:
            log.warning(f"{name}.redis_unavailable", error=str(exc))
        except Exception:
            log.exception(f"{name}.failed")
        await asyncio.sleep(interval)


def heartbeat(store: Dispatch, lanes: Sequence[Lane]) -> Duty:
    """This worker is alive, and so are the leases of the units it runs."""

    async def beat() -> None:
        await store.beat({lane.name: lane.leased() for lane in lanes})

    return beat


def housekeeping(upkeep: Upkeep, settings: Settings, metrics: WorkerMetrics, interval: float) -> Duty:
    """Expired orphan callbacks, old dead letters, idle event streams: trimmed by one worker per interval."""

    async def sweep() -> None:
        if not await upkeep.take_turn("housekeeping", interval):
            return
        swept = await upkeep.sweep(
            dead_retention_s=settings.message_retention,
            events_retention_s=settings.events_retention,
        )
        metrics.foreign_callbacks.inc(swept.orphans_expired)
        if swept.orphans_expired or swept.dead_letters_dropped:
            log.info(
                "housekeeping",
                orphans_expired=swept.orphans_expired,
                dead_letters_dropped=swept.dead_letters_dropped,
                stream_entries_trimmed=swept.stream_entries_trimmed,
            )

    return sweep


def balance_poller(upkeep: Upkeep, ubill: UbillClient, metrics: WorkerMetrics, interval: float) -> Duty:
    return balance.poller(upkeep, ubill, metrics, interval)


def refresh_gauges(upkeep: Upkeep, metrics: WorkerMetrics) -> Duty:
    """Queue depth and age per lane, dead letters, orphans: a handful of O(log n) reads per scrape."""

    async def refresh() -> None:
        try:
            depths, dead, orphans = await upkeep.lane_depths(LANES)
        except StoreUnavailable:
            return
        for lane, depth in depths.items():
            metrics.queue_units.labels(lane).set(depth.due)
            metrics.queue_scheduled.labels(lane).set(depth.later)
            metrics.queue_oldest_age.labels(lane).set(depth.oldest_age_s)
        metrics.dead_letter_units.set(dead)
        metrics.orphan_callbacks.set(orphans)

    return refresh
