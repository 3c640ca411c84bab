"""The Redis data model: where a message's state lives, and the only code that may read or change it.

    keys.py        every key name and TTL (handed to the Lua scripts by a generated prelude)
    statuses.py    recipient statuses, their ranks, unit states, uBill's codes
    records.py     the record formats and the typed view of a message (MessageView)
    lua/*.lua      every change, as one atomic script: accept, take, settle, callback, cancel, beat, upkeep
    scripts.py     loads the scripts behind the prelude
    messages.py    the gateway's side: accept (one round trip), find out, read, cancel
    dispatch.py    the worker's side: take, settle, heartbeat
    delivery.py    uBill's delivery statuses (callbacks and reports)
    upkeep.py      housekeeping, queue gauges, dead letters, the balance reading
    brands.py      the last reading of uBill's brand names (which brands uBill would refuse)
    connection.py  connections, what "unavailable" means, durability
    batching.py    concurrent script calls sharing one pipeline

Outside this package nobody reads a raw hash field or spells a key; Redis outages surface as
``smsgw.errors.StoreUnavailable``.
"""

from __future__ import annotations

from redis.asyncio import Redis

from smsgw.settings import Settings
from smsgw.store.batching import wait_for
from smsgw.store.brands import BrandNames
from smsgw.store.connection import Durability, connect, durability, translated
from smsgw.store.delivery import Deliveries
from smsgw.store.messages import Messages
from smsgw.store.scripts import Scripts
from smsgw.store.upkeep import Upkeep
from smsgw.store.verifications import Verifications

__all__ = ["Store"]


class Store:
    """One process's handle on the data model (one capped connection pool, the scripts loaded once)."""

    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        self.settings = settings
        self.redis = redis if redis is not None else connect(settings)
        self.scripts = Scripts.load(self.redis)
        self.messages = Messages(
            self.redis,
            self.scripts,
            timeout=settings.redis_timeout,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout=settings.redis_wait_timeout,
        )
        self.deliveries = Deliveries(
            self.redis,
            self.scripts,
            orphan_ttl=settings.orphan_ttl,
            reconcile_after=settings.reconcile_after,
            wait=wait_for(settings.redis_wait_replicas, settings.redis_wait_timeout),
        )
        self.upkeep = Upkeep(self.redis, self.scripts)
        self.brands = BrandNames(self.redis)
        self.verifications = Verifications(self.redis)

    async def load_scripts(self) -> None:
        """SCRIPT LOAD everything at start, so the first EVALSHA of each script runs at once (a lost answer to
        a NOSCRIPT round trip would otherwise be the first call's fate). After a Redis restart the scripts
        reload themselves on NOSCRIPT."""
        with translated():
            for name in self.scripts.__dataclass_fields__:
                script = getattr(self.scripts, name)
                await self.redis.script_load(script.script)

    async def durability(self) -> Durability:
        with translated():
            return await durability(self.redis)

    async def ping(self) -> None:
        with translated():
            await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()
