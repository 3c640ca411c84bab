"""The expiry sweep: a pending verification whose time is up becomes ``expired``, with its event, within a
minute (every ``SMSGW_VERIFY_SWEEP_INTERVAL`` seconds, 15 by default).

Expiry itself is decided by time (a check or resend after it answers ``expired`` at once); the sweep exists so
that the event is published even when nobody asks. Entries of ``smsgw:ver:expiries`` are removed as they are
handled, and when a verification ends otherwise. One gateway per interval does the work (a Redis lock); every
gateway refreshes the blocked-prefix gauge.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import structlog

from smsgw.clock import iso, now_ms
from smsgw.errors import StoreUnavailable
from smsgw.store.events import stream_minid
from smsgw.store.verifications import Verifications
from smsgw.verify.metrics import VerifyMetrics

__all__ = ["sweep_forever", "sweep_once"]

log = structlog.get_logger(__name__)
BATCH = 500


async def sweep_once(store: Verifications, metrics: VerifyMetrics, events_retention: int) -> int:
    """Expire what is due now; returns how many verifications expired."""
    expired: Counter[str] = Counter()
    while True:
        now = now_ms()
        result = await store.sweep(now, iso(now), stream_minid(now, events_retention), BATCH)
        expired.update(str(client) for client in result[1:])
        if int(result[0]) < BATCH:
            break
    for client, count in expired.items():
        metrics.finished.labels(client, "expired").inc(count)
    if expired:
        log.info("verification.expired", count=sum(expired.values()))
    return sum(expired.values())


async def sweep_forever(
    store: Verifications,
    metrics: VerifyMetrics,
    interval: float,
    events_retention: int,
    stop: asyncio.Event,
) -> None:
    """Until ``stop`` is set (a flag, not a cancel: on 3.11 a cancel that lands inside a Redis command's own
    timeout can be swallowed, and the loop would sleep on)."""
    while not stop.is_set():
        try:
            if await store.take_sweep_turn(interval):
                await sweep_once(store, metrics, events_retention)
            metrics.blocked_prefixes.set(await store.blocked_prefixes(now_ms()))
        except StoreUnavailable as exc:
            log.warning("verification.sweep_redis_unavailable", error=str(exc))
        except Exception:
            log.exception("verification.sweep_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
