"""A flood of callbacks does not slow sending: callbacks are the gateway's, dispatch is the worker's."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from smsgw.devtools.redis import free_port
from smsgw.ubill import format_local
from tests.harness import CALLBACK_KEY, Stack, answers_200, astop, eventually, spawn
from tests.worker.test_lanes import received_at


async def _flood(url: str, stop: asyncio.Event, sent: list[int]) -> None:
    date = format_local(datetime.now(UTC))
    async with aiohttp.ClientSession() as http:
        i = 0
        while not stop.is_set():
            i += 1
            params = {
                "key": CALLBACK_KEY,
                "smsID": str(900_000 + i),
                "number": f"99559{i % 10_000_000:07d}",
                "statusID": "1",
                "date": date,
            }
            async with http.get(url, params=params) as response:
                assert response.status == 200
            sent[0] += 1


async def _otp_latencies(stack: Stack, gateway: str, first: int, count: int) -> list[float]:
    delays = []
    headers = stack.auth()
    for i in range(count):
        number = f"99559300{first + i:04d}"
        before = time.time()
        async with stack.http.post(
            f"{gateway}/v1/messages", headers=headers, json={"to": number, "text": "Code", "priority": "otp"}
        ) as r:
            assert r.status == 202
        await eventually(lambda n=number: _got(stack, n), timeout=5, every=0.005)
        send = next(s for s in await stack.sandbox_sends() if s["numbers"] == [number])
        delays.append(received_at(send) - before)
    return delays


async def _got(stack: Stack, number: str) -> bool:
    return number in await stack.sandbox_counts()


async def test_callback_flood_does_not_slow_otp_dispatch(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    async with Stack(redis_url, worker=False) as stack:
        port = free_port()
        env = {**stack.env, "SMSGW_HTTP_PORT": str(port)}
        gateway_url = f"http://127.0.0.1:{port}"
        processes = [
            spawn("gateway", env, tmp_path / "gateway.log"),
            spawn("worker", env, tmp_path / "worker.log"),
        ]
        try:
            await eventually(lambda: answers_200(f"{gateway_url}/readyz"), timeout=20)
            quiet = await _otp_latencies(stack, gateway_url, 0, 10)
            stop, sent = asyncio.Event(), [0]
            floods = [
                asyncio.create_task(_flood(f"{gateway_url}/callbacks/ubill", stop, sent)) for _ in range(8)
            ]
            await asyncio.sleep(0.5)
            busy = await _otp_latencies(stack, gateway_url, 100, 10)
            stop.set()
            await asyncio.gather(*floods)
        finally:
            for process in processes:
                await astop(process)
        assert sent[0] > 200, "the flood did not happen"
        assert statistics.median(busy) < 0.5, (quiet, busy)
        quiet_ms, busy_ms = statistics.median(quiet) * 1000, statistics.median(busy) * 1000
        print(
            f"\nFAULT callback-flood: callbacks={sent[0]}, otp_p50_quiet_ms={quiet_ms:.1f}, "
            f"otp_p50_flood_ms={busy_ms:.1f}"
        )
