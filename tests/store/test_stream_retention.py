"""Event streams are bounded by age, not by history: housekeeping trims every client's stream past
``SMSGW_EVENTS_RETENTION`` (found by SCAN, so a worker needs no client list), and keeps what is newer."""

from __future__ import annotations

from redis.asyncio import Redis

from smsgw.clock import now_ms
from smsgw.store import keys
from smsgw.store.scripts import Scripts
from smsgw.store.upkeep import Upkeep

RETENTION_S = 3_600


async def _fill(redis: Redis, client: str, start_ms: int, count: int) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(count):
            pipe.xadd(keys.client_stream(client), {"event": "{}"}, id=f"{start_ms + i}-0")
        await pipe.execute()


async def test_housekeeping_trims_every_clients_stream_by_age(redis: Redis) -> None:
    now = now_ms()
    old = now - 2 * RETENTION_S * 1000  # written two retentions ago
    recent = now - 60_000
    for client in ("alpha", "beta"):
        await _fill(redis, client, old, 5_000)
        await _fill(redis, client, recent, 50)
    swept = await Upkeep(redis, Scripts.load(redis)).sweep(
        dead_retention_s=86_400, events_retention_s=RETENTION_S
    )
    for client in ("alpha", "beta"):
        stream = keys.client_stream(client)
        left = await redis.xrange(stream, min="-", max="+")
        kept_recent = [entry for entry, _ in left if int(str(entry).split("-")[0]) >= recent]
        assert len(kept_recent) == 50, f"{client}: trimming took events younger than the retention"
        # MINID "~" trims whole stream nodes (100 entries by default): at most one node of old entries stays.
        assert len(left) - 50 <= 100, f"{client}: {len(left) - 50} of 5,000 old events survived the retention"
    assert swept.stream_entries_trimmed >= 2 * (5_000 - 100)
