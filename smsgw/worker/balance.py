"""uBill's balance: one worker reads it per interval, every worker exports the shared reading.

The reading lives in Redis (``store.upkeep``) so all workers, and the facade's ``/v1/sms/balance``, agree. A
worker exports it only once a reading exists (``metrics.UbillBalance``): before the first successful call,
with polling off, or while every call fails, the balance is unknown, not zero.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog

from smsgw.errors import ProviderError
from smsgw.metrics import WorkerMetrics
from smsgw.store.upkeep import Upkeep
from smsgw.ubill import UbillClient

__all__ = ["poller"]

log = structlog.get_logger(__name__)


def poller(
    upkeep: Upkeep, ubill: UbillClient, metrics: WorkerMetrics, interval: float
) -> Callable[[], Awaitable[None]]:
    """One round: ask uBill if it is this worker's turn, then export the shared reading if there is one."""

    async def poll() -> None:
        if await upkeep.take_turn("balance", interval):
            await _ask_ubill(upkeep, ubill, metrics)
        current = await upkeep.balance()
        if current is not None:
            metrics.balance.set(current.sms, current.at_ms / 1000)

    return poll


async def _ask_ubill(upkeep: Upkeep, ubill: UbillClient, metrics: WorkerMetrics) -> None:
    started = time.perf_counter()
    try:
        sms = await ubill.balance()
    except ProviderError as exc:
        metrics.ubill_requests.labels("balance", exc.outcome).inc()
        log.warning("balance.failed", reason=str(exc))
    else:
        metrics.ubill_requests.labels("balance", "accepted").inc()
        await upkeep.record_balance(sms)
    finally:
        metrics.ubill_duration.labels("balance").observe(time.perf_counter() - started)
