"""The shared uBill capacity (in take.lua): priority on the surplus, OTP's reserve, lower lanes' shares.

Units are accepted through the real gateway and taken by hand through the store, as a worker takes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from smsgw.settings import LANES
from smsgw.store import keys
from smsgw.store.dispatch import Capacity, Dispatch, Send
from smsgw.store.scripts import Scripts
from tests.harness import Stack
from tests.worker.test_lanes import numbers

CAP = 10  # calls per second; shares: otp 20% (2), transactional 10% (1), bulk 10% (1)
SHARES = {"otp": 0.2, "transactional": 0.1, "bulk": 0.1}


@pytest.fixture
async def stack(redis_url: str) -> AsyncIterator[Stack]:
    async with Stack(redis_url, worker=False) as running:
        yield running


def dispatcher(redis: Redis, calls: int = CAP, per_second: int = 0) -> Dispatch:
    capacity = Capacity(calls, per_second, SHARES)
    return Dispatch(redis, redis, Scripts.load(redis), owner="test", lease=30, capacity=capacity)


async def queue(stack: Stack, lane: str, count: int, size: int = 1) -> None:
    start = {"otp": 91_100_000, "transactional": 91_200_000, "bulk": 91_300_000}[lane]
    for i in range(count):
        body = {"to": numbers(size, start + i * size), "text": "x", "priority": lane}
        await stack.send(body)


async def take(dispatch: Dispatch, lane: str, want: int) -> int:
    taken = await dispatch.take(lane, want, 100)
    return sum(isinstance(job, Send) for job in taken.jobs)


async def fresh_window(redis: Redis) -> None:
    """Start at the beginning of a Redis second so a scenario never straddles two windows."""
    _seconds, micros = await redis.time()
    await asyncio.sleep(1 - micros / 1_000_000 + 0.01)
    await redis.delete(*(keys.demand(lane) for lane in LANES))


async def test_bulk_alone_leaves_otp_its_reserve(stack: Stack, redis: Redis) -> None:
    await queue(stack, "bulk", 20)
    await queue(stack, "otp", 5)
    dispatch = dispatcher(redis)
    await fresh_window(redis)
    assert await take(dispatch, "bulk", 20) == 8  # 10 - OTP's 2, always kept free
    assert await take(dispatch, "otp", 5) == 2  # an OTP arriving behind bulk still goes at once


async def test_waiting_transactional_takes_the_surplus_from_bulk(stack: Stack, redis: Redis) -> None:
    await queue(stack, "bulk", 20)
    await queue(stack, "transactional", 20)
    dispatch = dispatcher(redis)
    await fresh_window(redis)
    await redis.set(keys.demand("transactional"), "1", px=1000)  # transactional was refused a moment ago
    assert await take(dispatch, "bulk", 20) == 1  # bulk keeps only its guaranteed share
    assert await take(dispatch, "transactional", 20) == 7  # the rest minus OTP's reserve


async def test_a_waiting_bulk_lane_keeps_its_minimum_share(stack: Stack, redis: Redis) -> None:
    await queue(stack, "otp", 20)
    await queue(stack, "bulk", 5)
    dispatch = dispatcher(redis)
    await fresh_window(redis)
    await redis.set(keys.demand("bulk"), "1", px=1000)
    assert await take(dispatch, "otp", 20) == 9  # OTP may use everything but bulk's unused share
    assert await take(dispatch, "bulk", 5) == 1


async def test_refusal_tells_how_long_to_wait_and_marks_demand(stack: Stack, redis: Redis) -> None:
    await queue(stack, "bulk", 10)
    dispatch = dispatcher(redis)
    await fresh_window(redis)
    assert await take(dispatch, "bulk", 8) == 8
    taken = await dispatch.take("bulk", 1, 100)
    wait = taken.capacity_wait
    assert taken.jobs == [] and 0 < wait <= 1.0
    assert await redis.exists(keys.demand("bulk"))
    # The unit that did not get capacity was not claimed: it is still queued, cancellable, due.
    started = time.monotonic()
    await asyncio.sleep(wait)
    assert await take(dispatch, "bulk", 1) == 1 and time.monotonic() - started < 1.1


async def test_numbers_per_second_limit(stack: Stack, redis: Redis) -> None:
    await queue(stack, "bulk", 3, size=40)
    dispatch = dispatcher(redis, calls=0, per_second=100)
    await fresh_window(redis)
    assert await take(dispatch, "bulk", 3) == 2  # 80 numbers fit in 100 minus OTP's 20; a third would not


async def test_a_unit_larger_than_any_share_still_goes_alone(stack: Stack, redis: Redis) -> None:
    """A unit made under a larger limit (or batch size) must not wait for ever: alone in an empty window,
    it goes."""
    await queue(stack, "transactional", 2, size=90)
    dispatch = dispatcher(redis, calls=0, per_second=50)
    await fresh_window(redis)
    assert await take(dispatch, "transactional", 2) == 1  # the whole window to the one that does not fit
    await fresh_window(redis)
    assert await take(dispatch, "transactional", 2) == 1
