"""Reads and chores around the data model: housekeeping, queue gauges, dead letters, the balance reading.

Housekeeping runs on a timer in the worker (never at scrape time), under a leader lock so one worker does it.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from smsgw.clock import now_ms
from smsgw.store import keys
from smsgw.store.connection import translated
from smsgw.store.events import stream_minid
from smsgw.store.records import MessageView, Unit
from smsgw.store.scripts import Scripts
from smsgw.store.statuses import FAILED

__all__ = ["Balance", "DeadLetter", "LaneDepth", "Swept", "Upkeep"]


@dataclass(frozen=True)
class Swept:
    orphans_expired: int
    dead_letters_dropped: int
    stream_entries_trimmed: int


@dataclass(frozen=True)
class LaneDepth:
    due: int  # waiting for a worker now (running units are leased ahead, so not counted)
    later: int  # timers in the future: send_at, retry backoff, running leases, reconciliation
    oldest_age_s: float  # how long the oldest due unit has been waiting


@dataclass(frozen=True)
class DeadLetter:
    id: str
    dead_ms: int
    view: MessageView
    unit: Unit

    @property
    def replay_id(self) -> str:
        """The replay's message id: fixed, so a second replay of the same letter is refused, never sent."""
        return f"{self.view.meta.id}-r{self.unit.k}"

    def failed_numbers(self) -> tuple[str, ...]:
        """The unit's recipients still ``failed``: what a replay sends again."""
        numbers = self.view.unit_numbers[self.unit.k]
        return tuple(r.number for r in self.view.recipients() if r.number in numbers and r.status == FAILED)


@dataclass(frozen=True)
class Balance:
    sms: int
    at_ms: int


class Upkeep:
    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts
        self._kept_marked = False

    async def take_turn(self, name: str, seconds: float) -> bool:
        """True for one process per interval (a leader lock that expires by itself)."""
        with translated():
            return bool(await self._redis.set(keys.lock(name), "1", nx=True, px=max(1, int(seconds * 900))))

    async def sweep(self, *, dead_retention_s: int, events_retention_s: int) -> Swept:
        """One round of housekeeping. Every client's stream is trimmed, found by SCAN: a worker may not be
        given the clients' list (the chart gives it to gateways only)."""
        now = now_ms()
        if not self._kept_marked:
            await self.mark_kept(now)
            self._kept_marked = True
        prefix = keys.client_stream("")
        with translated():
            clients = [
                str(key).removeprefix(prefix) async for key in self._redis.scan_iter(match=prefix + "*")
            ]
            raw = await self._scripts.upkeep(
                args=[
                    now,
                    now - dead_retention_s * 1000,
                    stream_minid(now, events_retention_s),
                    orjson.dumps(clients),
                ]
            )
        return Swept(int(raw[0]), int(raw[1]), int(raw[2]))

    async def mark_kept(self, now: int, chunk: int = 500) -> int:
        """Once per process: smsIDs whose callbacks were kept by a version that did not say so in the smsID
        index get its "kept" entry (never over a recorded one), so recording them applies the callbacks."""
        marked = 0
        with translated():
            pipe = self._redis.pipeline(transaction=False)
            async for sms, expires_ms in self._redis.zscan_iter(keys.ORPHANS, count=chunk):
                if expires_ms > now:
                    pipe.set(keys.sms(str(sms)), keys.SMS_KEPT, pxat=int(expires_ms), nx=True)
                if len(pipe) >= chunk:
                    marked += sum(1 for done in await pipe.execute() if done)
            marked += sum(1 for done in await pipe.execute() if done)
        return marked

    async def lane_depths(self, lanes: tuple[str, ...]) -> tuple[dict[str, LaneDepth], int, int]:
        """Per lane depth, then dead letters and smsIDs with kept orphan callbacks."""
        now = now_ms()
        with translated():
            async with self._redis.pipeline(transaction=False) as pipe:
                for lane in lanes:
                    queue = keys.lane_queue(lane)
                    pipe.zcount(queue, "-inf", now)
                    pipe.zcount(queue, f"({now}", "+inf")
                    pipe.zrangebyscore(queue, "-inf", now, start=0, num=1, withscores=True)
                pipe.zcard(keys.DEAD)
                pipe.zcard(keys.ORPHANS)
                results = await pipe.execute()
        depths = {}
        for i, lane in enumerate(lanes):
            due, later, oldest = results[3 * i : 3 * i + 3]
            age = max(0.0, (now - oldest[0][1]) / 1000) if oldest else 0.0
            depths[lane] = LaneDepth(int(due), int(later), age)
        return depths, int(results[-2]), int(results[-1])

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        with translated():
            entries = await self._redis.zrevrange(keys.DEAD, 0, limit - 1, withscores=True)
        out = []
        for dead_id, score in entries:
            found = await self.dead_letter(str(dead_id))
            if found is not None:
                out.append(DeadLetter(found.id, int(score), found.view, found.unit))
        return out

    async def dead_letter(self, dead_id: str) -> DeadLetter | None:
        message_id, _, k = dead_id.rpartition(":")
        if not k.isdigit():
            return None
        with translated():
            fields: dict[str, str] = await self._redis.hgetall(keys.message(message_id))  # type: ignore[misc]
            score = await self._redis.zscore(keys.DEAD, dead_id)
        if not fields:
            return None
        view = MessageView.parse(message_id, fields)
        unit = next((u for u in view.units if u.k == int(k)), None)
        if unit is None:
            return None
        return DeadLetter(dead_id, int(score or 0), view, unit)

    async def mark_replayed(self, letter: DeadLetter, replay_id: str) -> None:
        """The dead unit was sent again as ``replay_id``: it leaves the dead letters for good."""
        unit = letter.unit
        value = "|".join(
            [
                f"replayed:{replay_id}",
                unit.owner,
                unit.sms_id,
                str(unit.tries),
                str(unit.open),
                str(unit.at_ms),
                unit.reason,
            ]
        )
        with translated():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(keys.message(letter.view.meta.id), f"u:{unit.k}", value)
                pipe.zrem(keys.DEAD, letter.id)
                await pipe.execute()

    async def record_balance(self, sms: int) -> None:
        with translated():
            await self._redis.set(keys.BALANCE, orjson.dumps({"sms": sms, "at": now_ms()}))

    async def balance(self) -> Balance | None:
        with translated():
            raw = await self._redis.get(keys.BALANCE)
        if not raw:
            return None
        try:
            reading = orjson.loads(raw)
            return Balance(int(reading["sms"]), int(reading["at"]))
        except (ValueError, TypeError, KeyError):
            return None
