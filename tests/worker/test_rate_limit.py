"""The shared uBill capacity (lua/rate.lua): priority on the surplus, OTP's reserve, lower lanes' shares."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from smsgw import keys
from smsgw.lua import Scripts
from smsgw.settings import LANES

CAP = 10  # calls per second; shares: otp 20% (2), transactional 10% (1), bulk 10% (1)


async def take(scripts: Scripts, lane: str, times: int) -> int:
    granted = 0
    for _ in range(times):
        ok, _wait = await scripts.rate(args=[lane, 1, CAP, 0, 0.2, 0.1, 0.1])
        granted += int(ok)
    return granted


async def fresh_window(redis: Redis) -> None:
    """Start at the beginning of a Redis second so a scenario never straddles two windows."""
    _seconds, micros = await redis.time()
    await asyncio.sleep(1 - micros / 1_000_000 + 0.01)
    await redis.delete(*(keys.demand(lane) for lane in LANES))


async def test_bulk_alone_leaves_otp_its_reserve(redis: Redis) -> None:
    scripts = Scripts.load(redis)
    await fresh_window(redis)
    assert await take(scripts, "bulk", 20) == 8  # 10 - OTP's 2, always kept free
    assert await take(scripts, "otp", 5) == 2  # an OTP arriving behind bulk still goes at once


async def test_waiting_transactional_takes_the_surplus_from_bulk(redis: Redis) -> None:
    scripts = Scripts.load(redis)
    await fresh_window(redis)
    await redis.set(keys.demand("transactional"), "1", px=1000)  # transactional was refused a moment ago
    assert await take(scripts, "bulk", 20) == 1  # bulk keeps only its guaranteed share
    assert await take(scripts, "transactional", 20) == 7  # the rest minus OTP's reserve


async def test_a_waiting_bulk_lane_keeps_its_minimum_share(redis: Redis) -> None:
    scripts = Scripts.load(redis)
    await fresh_window(redis)
    await redis.set(keys.demand("bulk"), "1", px=1000)
    assert await take(scripts, "otp", 20) == 9  # OTP may use everything but bulk's unused share
    assert await take(scripts, "bulk", 5) == 1


async def test_refusal_tells_how_long_to_wait_and_marks_demand(redis: Redis) -> None:
    scripts = Scripts.load(redis)
    await fresh_window(redis)
    await take(scripts, "bulk", 8)
    ok, wait_ms = await scripts.rate(args=["bulk", 1, CAP, 0, 0.2, 0.1, 0.1])
    assert int(ok) == 0 and 0 < int(wait_ms) <= 1000
    assert await redis.exists(keys.demand("bulk"))
    started = time.monotonic()
    await asyncio.sleep(int(wait_ms) / 1000)
    assert await take(scripts, "bulk", 1) == 1 and time.monotonic() - started < 1.1


async def test_numbers_per_second_limit(redis: Redis) -> None:
    scripts = Scripts.load(redis)
    await fresh_window(redis)
    grants = [int((await scripts.rate(args=["bulk", 40, 0, 100, 0.2, 0.1, 0.1]))[0]) for _ in range(3)]
    assert grants == [1, 1, 0]  # 80 numbers fit in 100 minus OTP's 20; a third call would not
