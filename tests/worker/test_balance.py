"""The uBill balance on the worker's ``/metrics``: absent until a reading exists, never a made-up 0."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from smsgw.sandbox.config import DEFAULT_BALANCE
from smsgw.worker.main import WorkerProcess
from tests.harness import Stack, eventually, serve

BALANCE = re.compile(r"^smsgw_ubill_balance_sms (\S+)$", re.MULTILINE)
AGE = re.compile(r"^smsgw_ubill_balance_age_seconds (\S+)$", re.MULTILINE)
FAILED_BALANCE_CALLS = re.compile(
    r'^smsgw_ubill_requests_total\{endpoint="balance",outcome="(?!accepted")[^"]+"\} (\S+)$', re.MULTILINE
)


@asynccontextmanager
async def worker_http(stack: Stack) -> AsyncIterator[str]:
    """The worker's own /healthz, /readyz, /metrics server on a real socket, as ``smsgw worker`` serves it."""
    assert stack.worker is not None
    runner, url = await serve(stack.worker.http_app())
    try:
        yield url
    finally:
        await runner.cleanup()


async def scrape(stack: Stack, url: str) -> str:
    async with stack.http.get(f"{url}/metrics") as response:
        assert response.status == 200
        return await response.text()


def value(pattern: re.Pattern[str], text: str) -> float | None:
    match = pattern.search(text)
    return float(match.group(1)) if match else None


def no_balance_series(text: str) -> bool:
    return "smsgw_ubill_balance" not in text


async def test_no_balance_series_while_polling_is_off(redis: Redis, redis_url: str) -> None:
    async with Stack(redis_url, env={"SMSGW_BALANCE_INTERVAL": "0"}) as stack, worker_http(stack) as url:
        await asyncio.sleep(0.5)
        text = await scrape(stack, url)
        assert "smsgw_queue_units" in text  # the scrape itself works
        assert no_balance_series(text), text
        assert await redis.get("smsgw:balance") is None


async def test_balance_appears_after_a_reading_and_its_age_grows(redis: Redis, redis_url: str) -> None:
    # One poll at start (the next is an hour away): the age must grow from the reading's time by itself.
    async with Stack(redis_url, env={"SMSGW_BALANCE_INTERVAL": "3600"}, worker=False) as stack:
        await stack.start_worker()
        async with worker_http(stack) as url:
            await eventually(lambda: _has_balance(stack, url), timeout=10)
            text = await scrape(stack, url)
            assert value(BALANCE, text) == DEFAULT_BALANCE
            first_age = value(AGE, text)
            assert first_age is not None and 0 <= first_age < 5
            await asyncio.sleep(1.5)
            later_age = value(AGE, await scrape(stack, url))
            assert later_age is not None and later_age >= first_age + 1.0
            # The facade reads the same reading.
            async with stack.http.get(f"{stack.url}/v1/sms/balance", headers=stack.auth()) as response:
                assert (await response.json())["sms"] == str(DEFAULT_BALANCE)


async def test_no_balance_series_before_the_first_reading(redis: Redis, redis_url: str) -> None:
    """The worker serves /metrics before its duties start; the first successful poll makes the series."""
    async with Stack(redis_url, env={"SMSGW_BALANCE_INTERVAL": "0.3"}, worker=False) as stack:
        stack.worker = WorkerProcess(stack.settings)
        async with worker_http(stack) as url:
            assert no_balance_series(await scrape(stack, url))
            stack.worker_task = asyncio.create_task(stack.worker.serve())
            await eventually(lambda: _has_balance(stack, url), timeout=10)


async def test_balance_stays_absent_while_every_balance_call_fails(redis: Redis, redis_url: str) -> None:
    # The sandbox knows another key: every balance call is refused (HTTP 401, statusID 99).
    async with (
        Stack(redis_url, env={"SMSGW_BALANCE_INTERVAL": "0.2"}, sandbox={"api_key": "another-key"}) as stack,
        worker_http(stack) as url,
    ):
        await eventually(lambda: _failed_calls_at_least(stack, url, 3), timeout=10)
        text = await scrape(stack, url)
        assert no_balance_series(text), text
        assert await redis.get("smsgw:balance") is None


async def test_a_reading_survives_failing_calls_and_ages(redis: Redis, redis_url: str) -> None:
    """After uBill goes away the last reading stays exported, growing older, rather than vanishing or 0."""
    async with Stack(redis_url, env={"SMSGW_BALANCE_INTERVAL": "0.2"}) as stack, worker_http(stack) as url:
        await eventually(lambda: _has_balance(stack, url), timeout=10)
        await stack.runners.pop(0).cleanup()  # the sandbox: every call now meets a refused connection
        await eventually(lambda: _failed_calls_at_least(stack, url, 3), timeout=10)
        await asyncio.sleep(1.0)
        text = await scrape(stack, url)
        assert value(BALANCE, text) == DEFAULT_BALANCE
        age = value(AGE, text)
        assert age is not None and age >= 1.0


async def _has_balance(stack: Stack, url: str) -> bool:
    return value(BALANCE, await scrape(stack, url)) is not None


async def _failed_calls_at_least(stack: Stack, url: str, count: int) -> bool:
    text = await scrape(stack, url)
    return sum(float(v) for v in FAILED_BALANCE_CALLS.findall(text)) >= count
