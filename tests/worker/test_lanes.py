"""Lanes: OTP first, transactional ahead of bulk, no lower lane starved, blocking wake-up."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import datetime

from redis.asyncio import Redis

from tests.harness import Stack, eventually


def numbers(count: int, start: int = 91_000_000) -> list[str]:
    """Distinct valid Georgian mobiles: 9955 + 8 digits (the 5591/5592 ranges are valid)."""
    return [f"9955{start + i:08d}" for i in range(count)]


def received_at(send: dict[str, object]) -> float:
    return datetime.fromisoformat(str(send["time"]).replace("Z", "+00:00")).timestamp()


async def test_otp_and_transactional_overtake_a_bulk_backlog(redis: Redis, redis_url: str) -> None:
    env = {"SMSGW_BATCH_SIZE": "10", "SMSGW_CONCURRENCY_BULK": "2"}
    async with Stack(redis_url, env=env, sandbox={"latency": "0.1"}, worker=False) as stack:
        bulk = await stack.send({"to": numbers(1500), "text": "Sale!", "priority": "bulk"})
        await stack.start_worker()
        await asyncio.sleep(0.5)
        otp_sent = time.time()
        otp = await stack.send({"to": "+995 591 00 00 01", "text": "Code 1234", "priority": "otp"})
        tx = await stack.send({"to": "+995 591 00 00 02", "text": "Order shipped"})
        await stack.wait_status(otp["id"], "submitted", "sent", "delivered", timeout=5)
        await stack.wait_status(tx["id"], "submitted", "sent", "delivered", timeout=5)
        sends = await stack.sandbox_sends()
        otp_send = next(s for s in sends if s["numbers"] == ["995591000001"])
        assert otp_send["otp"] is True
        # Handed over within a fraction of a second while most of the backlog still waits.
        assert received_at(otp_send) - otp_sent < 0.5
        bulk_state = await stack.get(bulk["id"])
        assert bulk_state["counts"].get("queued", 0) > 1000


async def test_idle_wake_up_is_not_a_poll(redis: Redis, redis_url: str) -> None:
    """An idle worker blocks on the lane's wake list: an OTP goes out well under the 1 s fallback."""
    async with Stack(redis_url) as stack:
        await asyncio.sleep(1.2)  # let every lane worker reach its blocking wait
        delays = []
        for i in range(5):
            before = time.time()
            await stack.send({"to": f"+99559100001{i}", "text": "Code", "priority": "otp"})
            await eventually(lambda n=i: _received(stack, f"99559100001{n}"), timeout=3, every=0.01)
            sends = await stack.sandbox_sends()
            delays.append(received_at(next(s for s in sends if s["numbers"] == [f"99559100001{i}"])) - before)
            await asyncio.sleep(1.1)
        assert statistics.median(delays) < 0.3, delays


async def _received(stack: Stack, number: str) -> bool:
    return number in await stack.sandbox_counts()


async def test_lower_lanes_keep_a_share_under_rate_limit(redis: Redis, redis_url: str) -> None:
    """With uBill limited to 10 calls/s and both lanes backlogged, bulk still gets its 20% minimum share."""
    env = {
        "SMSGW_UBILL_RATE_CALLS": "10",
        "SMSGW_BATCH_SIZE": "1",
        "SMSGW_MIN_SHARE_BULK": "0.2",
        "SMSGW_MIN_SHARE_TRANSACTIONAL": "0.1",
        "SMSGW_OTP_RESERVE": "0.2",
    }
    async with Stack(redis_url, env=env, worker=False) as stack:
        await stack.send({"to": numbers(60), "text": "Sale!", "priority": "bulk"})
        await stack.send({"to": numbers(60, 92_000_000), "text": "Receipt", "priority": "transactional"})
        await stack.start_worker()
        await asyncio.sleep(3.2)
        await stack.stop_worker()
        sends = await stack.sandbox_sends()
        bulk = sum(1 for s in sends if s["numbers"][0].startswith("99559100"))
        tx = sum(1 for s in sends if s["numbers"][0].startswith("99559200"))
        per_second: dict[int, int] = {}
        for s in sends:
            per_second[int(received_at(s))] = per_second.get(int(received_at(s)), 0) + 1
        # the global limit holds (+1: the sandbox stamps a call granted at a window's very end a few ms later)
        assert max(per_second.values()) <= 11
        assert bulk >= 2 * 2  # >= 20% of 10 calls/s over the (at least) two full windows
        assert tx > bulk  # transactional takes the surplus
