"""The last reading of uBill's brand names, and what it says about one brand.

The worker reads uBill's ``brandNames`` (at start and every ``SMSGW_BRANDS_INTERVAL``) and records it here;
each gateway copies it into memory in the background, so refusing a send for a brand uBill would refuse costs
the accept path nothing. A reading older than ``stale_after(interval)`` says nothing: uBill or the worker has
not been heard from, and sends are let through rather than refused on old news (fail open).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from smsgw.clock import now_ms
from smsgw.store import keys
from smsgw.store.connection import translated
from smsgw.ubill import Brand

__all__ = ["BrandNames", "BrandReading", "stale_after"]

MIN_STALE_AFTER = 900.0  # seconds: a few missed readings (uBill briefly down) keep the last verdict


def stale_after(interval: float) -> float:
    """Seconds after which a reading no longer counts: three missed readings, at least 15 minutes."""
    return max(3 * interval, MIN_STALE_AFTER)


@dataclass(frozen=True)
class BrandReading:
    at_ms: int
    brands: tuple[Brand, ...]

    def find(self, brand_id: int) -> Brand | None:
        return next((b for b in self.brands if b.id == brand_id), None)

    def problem(self, brand_id: int) -> str | None:
        """Why uBill would refuse a send with this brand, or None when it is approved."""
        brand = self.find(brand_id)
        if brand is None:
            return f"brand {brand_id} is unknown to uBill"
        if not brand.approved:
            return f"brand {brand_id} is not approved by uBill"
        return None

    def age_s(self, now: int | None = None) -> float:
        return max(0.0, ((now_ms() if now is None else now) - self.at_ms) / 1000)

    def to_json(self) -> bytes:
        entries = [[b.id, b.name, b.authorized, b.created_at] for b in self.brands]
        return orjson.dumps({"at": self.at_ms, "brands": entries})

    @classmethod
    def from_json(cls, raw: str | bytes) -> BrandReading:
        data = orjson.loads(raw)
        brands = tuple(Brand(int(i), str(n), str(a), str(c)) for i, n, a, c in data["brands"])
        return cls(int(data["at"]), brands)


class BrandNames:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def record(self, brands: list[Brand]) -> BrandReading:
        reading = BrandReading(now_ms(), tuple(brands))
        with translated():
            await self._redis.set(keys.BRANDS, reading.to_json(), ex=keys.BRANDS_TTL)
        return reading

    async def reading(self) -> BrandReading | None:
        with translated():
            raw = await self._redis.get(keys.BRANDS)
        if not raw:
            return None
        try:
            return BrandReading.from_json(raw)
        except (ValueError, KeyError, TypeError):
            return None  # written by another version: the next reading replaces it
