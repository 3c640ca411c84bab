"""Phone verification's part of the data model: its records, windows, guard and scripts, and the one class
(``Verifications``) through which the gateway and the sweep reach them.

    keys.py      every verification key and TTL (a prelude hands them to the scripts)
    records.py   the verification record and its resource
    scripts.py   the scripts behind the store's and this package's preludes
    lua/*.lua    create, resend, check, undo, sweep: each one atomic change
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from smsgw.store import keys as core
from smsgw.store.connection import translated
from smsgw.store.verifications import keys
from smsgw.store.verifications.records import Verification
from smsgw.store.verifications.scripts import VerifyScripts

__all__ = ["Verifications"]


class Verifications:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._scripts = VerifyScripts.load(redis)

    async def load(self, verification_id: str) -> Verification | None:
        with translated():
            fields: dict[str, str] = await self._redis.hgetall(keys.verification(verification_id))  # type: ignore[misc]
        return Verification.from_hash(verification_id, fields) if fields else None

    async def create(
        self, args: dict[str, Any], *, verification_id: str, number: str, client: str, record_key: str
    ) -> list[Any]:
        """create.lua: Idempotency-Key, block, abuse windows, pumping guard, and the record."""
        prefix = keys.prefix_of(number)
        script_keys = [
            keys.verification(verification_id),
            record_key,
            keys.number_window(number),
            keys.prefix_window(prefix),
            keys.client_window(client),
            keys.guard_started(prefix),
            keys.guard_approved(prefix),
            keys.block(prefix),
            keys.BLOCKS,
            keys.EXPIRIES,
        ]
        with translated():
            result: list[Any] = await self._scripts.create(keys=script_keys, args=[orjson.dumps(args)])
        return result

    async def finish_idempotency(self, record_key: str, digest: str, verification_id: str) -> None:
        """The key reserved by create becomes the finished record once the code's SMS is stored."""
        with translated():
            await self._redis.set(record_key, f"done|{digest}|{verification_id}|201", ex=core.IDEMPOTENCY_TTL)

    async def resend(self, verification_id: str, args: dict[str, Any]) -> list[Any]:
        with translated():
            result: list[Any] = await self._scripts.resend(
                keys=[keys.verification(verification_id)], args=[orjson.dumps(args)]
            )
        return result

    async def check(self, verification_id: str, args: dict[str, Any]) -> list[Any]:
        with translated():
            result: list[Any] = await self._scripts.check(
                keys=[keys.verification(verification_id)], args=[orjson.dumps(args)]
            )
        return result

    async def undo(self, verification_id: str, record_key: str, undo: dict[str, Any]) -> bool:
        """Take back a create or resend whose SMS provably was not stored; False when its SMS is stored after
        all (under the same id, by a retry with the create's key), which leaves everything as it is."""
        with translated():
            done = await self._scripts.undo(
                keys=[keys.verification(verification_id), record_key], args=[orjson.dumps(undo)]
            )
        return bool(done)

    async def take_sweep_turn(self, interval: float) -> bool:
        with translated():
            lock = core.lock(keys.SWEEP_LOCK)
            return bool(await self._redis.set(lock, "1", nx=True, px=max(1, int(interval * 900))))

    async def sweep(self, now: int, iso: str, minid: str, batch: int) -> list[Any]:
        """Expire up to ``batch`` verifications due by ``now`` (sweep.lua): [count, client, client, ...]."""
        with translated():
            result: list[Any] = await self._scripts.sweep(keys=[keys.EXPIRIES], args=[now, iso, minid, batch])
        return result

    async def blocked_prefixes(self, now: int) -> int:
        """Prefixes the pumping guard blocks now (ended blocks leave the index as a side effect)."""
        with translated():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(keys.BLOCKS, "-inf", now)
                pipe.zcard(keys.BLOCKS)
                _, count = await pipe.execute()
        return int(count)
