"""Which configured brands uBill would refuse, known in memory so the accept path asks Redis nothing.

The worker records uBill's ``brandNames`` in Redis; every gateway copies that reading into memory every
``refresh_interval`` (at most 15 s) and judges the brands its clients may use. A send for a brand that uBill
does not know or has not approved is then refused at once (422, or the facade's statusID 10) instead of being
queued only to come back ``rejected``. Without a reading, or with one older than
``stale_after(SMSGW_BRANDS_INTERVAL)`` (uBill or the worker not heard from), nothing is refused: the gateway
fails open and uBill decides, as before.

The gateway is the judge because it holds ``SMSGW_CLIENTS`` (the chart gives it to gateway pods only): each
verdict is a warning or info line when it changes and the gauge ``smsgw_brand_usable{brand}``.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from smsgw.errors import StoreUnavailable
from smsgw.metrics import GatewayMetrics
from smsgw.settings import Settings
from smsgw.store.brands import BrandNames, BrandReading, stale_after

__all__ = ["BrandGate", "refresh_interval"]

log = structlog.get_logger(__name__)
MAX_REFRESH_INTERVAL = 15.0  # seconds: how soon a new reading (or a fixed brand) reaches every gateway
MIN_REFRESH_INTERVAL = 0.25


def refresh_interval(brands_interval: float) -> float:
    """Four looks per reading interval, at most 15 s apart: a new reading is in memory soon after."""
    return max(MIN_REFRESH_INTERVAL, min(MAX_REFRESH_INTERVAL, brands_interval / 4))


class BrandGate:
    def __init__(self, store: BrandNames, settings: Settings, metrics: GatewayMetrics) -> None:
        self._store = store
        self._metrics = metrics
        self._enabled = settings.brands_interval > 0
        self._every = refresh_interval(settings.brands_interval)
        self._stale_after_ms = int(stale_after(settings.brands_interval) * 1000)
        self._users: dict[int, list[str]] = {}
        for client in settings.clients:
            for brand in client.brands:
                self._users.setdefault(brand, []).append(client.name)
        self.reading: BrandReading | None = None  # the last reading seen, fresh or not (for brandNames)
        self._verdicts: dict[int, str | None] = {}  # only while a fresh reading exists; empty = fail open

    def name(self, brand_id: int) -> str | None:
        """The brand's name as uBill last reported it (None before a reading, or for a brand not listed)."""
        brand = self.reading.find(brand_id) if self.reading is not None else None
        return brand.name if brand is not None and brand.name else None

    def refusal(self, brand_id: int) -> str | None:
        """Why a send with this brand is refused now, or None (no dictionary miss costs a Redis call)."""
        return self._verdicts.get(brand_id)

    async def refresh(self) -> None:
        """Take the latest reading from Redis and judge every configured brand against it."""
        self.reading = await self._store.reading() if self._enabled else None
        self._judge(time.time_ns() // 1_000_000)

    def _judge(self, now: int) -> None:
        reading = self.reading
        if reading is None or now - reading.at_ms > self._stale_after_ms:
            if self._verdicts:
                log.warning(
                    "brands.reading_stale",
                    age_s=round(reading.age_s(now)) if reading else None,
                    detail="no recent reading of uBill's brand names: sends are no longer checked for brands",
                )
            self._verdicts = {}
            self._metrics.brand_usable.clear()  # no reading is no verdict, not "unusable"
            return
        verdicts = {brand: reading.problem(brand) for brand in sorted(self._users)}
        for brand, problem in verdicts.items():
            if brand in self._verdicts and self._verdicts[brand] == problem:
                continue
            if problem is not None:
                log.warning("brand.unusable", brand_id=brand, reason=problem, clients=self._users[brand])
            elif brand in self._verdicts:
                log.info("brand.usable", brand_id=brand)
            self._metrics.brand_usable.labels(str(brand)).set(0 if problem else 1)
        self._verdicts = verdicts

    async def keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.refresh()
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("brands.refresh_failed")
