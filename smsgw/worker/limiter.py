"""uBill dispatch capacity shared by every worker (calls/s and numbers/s), lane-aware (see lua/rate.lua)."""

from __future__ import annotations

import asyncio
import random
import time

from arq.worker import Retry

from smsgw.lua import Scripts
from smsgw.metrics import WorkerMetrics
from smsgw.settings import Settings

__all__ = ["DispatchLimiter"]

MAX_WAIT = 10.0  # longer waits give the worker slot back and come back later


class DispatchLimiter:
    def __init__(self, scripts: Scripts, settings: Settings, metrics: WorkerMetrics) -> None:
        self._scripts = scripts
        self._settings = settings
        self._metrics = metrics
        self.enabled = bool(settings.ubill_rate_calls or settings.ubill_rate_numbers)

    async def acquire(self, lane: str, numbers: int, stopping: asyncio.Event) -> None:
        """Wait for capacity for one call; raises arq ``Retry`` instead of waiting long or past shutdown."""
        if not self.enabled:
            return
        s = self._settings
        started = time.monotonic()
        while True:
            granted, wait_ms = await self._scripts.rate(
                args=[
                    lane,
                    numbers,
                    s.ubill_rate_calls,
                    s.ubill_rate_numbers,
                    s.otp_reserve,
                    s.min_share_transactional,
                    s.min_share_bulk,
                ]
            )
            waited = time.monotonic() - started
            if int(granted) == 1:
                if waited > 0.001:
                    self._metrics.rate_wait.labels(lane).inc(waited)
                return
            delay = int(wait_ms) / 1000 + random.uniform(0, 0.01)  # noqa: S311 - jitter, not crypto
            if stopping.is_set() or waited + delay > MAX_WAIT:
                self._metrics.rate_wait.labels(lane).inc(waited)
                raise Retry(defer=delay)
            await asyncio.sleep(delay)
