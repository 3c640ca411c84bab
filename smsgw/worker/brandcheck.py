"""Reading uBill's brand names: at the worker's start and every ``SMSGW_BRANDS_INTERVAL``, by one worker.

The reading goes to Redis (``smsgw.store.brands``) for the gateways, which hold the clients' brands and judge
them (``smsgw.gateway.brands``): a send for a brand uBill does not know or has not approved is refused there.
A failed reading keeps the previous one; after ``stale_after`` without a new one the gateways stop judging.
"""

from __future__ import annotations

import time

import structlog

from smsgw.errors import ProviderError
from smsgw.metrics import WorkerMetrics
from smsgw.store.brands import BrandNames
from smsgw.store.upkeep import Upkeep
from smsgw.ubill import UbillClient
from smsgw.worker.upkeep import Duty

__all__ = ["brand_reader"]

log = structlog.get_logger(__name__)
ENDPOINT = "brands"  # the endpoint label of smsgw_ubill_requests_total


def brand_reader(
    brands: BrandNames, upkeep: Upkeep, ubill: UbillClient, metrics: WorkerMetrics, interval: float
) -> Duty:
    async def read() -> None:
        if not await upkeep.take_turn("brands", interval):
            return
        started = time.perf_counter()
        try:
            found = await ubill.brands()
        except ProviderError as exc:
            metrics.ubill_requests.labels(ENDPOINT, exc.outcome).inc()
            log.warning("brands.read_failed", reason=str(exc), detail="the previous reading stays in use")
            return
        finally:
            metrics.ubill_duration.labels(ENDPOINT).observe(time.perf_counter() - started)
        metrics.ubill_requests.labels(ENDPOINT, "accepted").inc()
        await brands.record(found)
        log.info(
            "brands.read",
            approved=[b.id for b in found if b.approved],
            not_approved=[b.id for b in found if not b.approved],
        )

    return read
