"""Stock arq workers for the baselines, run exactly as arq's own CLI runs them.

``python -m arq ops.bench.arq_baseline.WorkerSettings`` with ``BENCH_ARQ_REDIS`` (required: never a default
Redis), ``BENCH_ARQ_QUEUE``, ``BENCH_ARQ_POLL_DELAY`` (arq's default 0.5) and, for ``send``,
``BENCH_ARQ_UBILL_URL`` / ``BENCH_ARQ_UBILL_KEY``, ``BENCH_ARQ_MAX_JOBS`` (arq's default 10). Everything else
is arq's default: ``queue_read_limit`` max(5 x max_jobs, 100), pickle serialisation, results kept, INFO
logging of every job.

Jobs: ``noop()`` does nothing; ``send(numbers, text, otp)`` makes the same uBill GET call the gateway's worker
makes (one call for up to 100 numbers) against the sandbox.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import aiohttp
from arq.connections import RedisSettings
from arq.jobs import serialize_job

__all__ = ["WorkerSettings", "job_record", "noop", "send"]


async def noop(_ctx: dict[str, Any]) -> None:
    return None


async def send(ctx: dict[str, Any], numbers: list[str], text: str, otp: bool) -> int:
    params = {"key": ctx["ubill_key"], "brandID": "1", "numbers": ",".join(numbers), "text": text}
    if otp:
        params["otp"] = "true"
    session: aiohttp.ClientSession = ctx["session"]
    async with session.get(ctx["ubill_url"] + "/sms/send", params=params) as response:
        body = await response.json(content_type=None)
    if body.get("statusID") != 0:
        raise RuntimeError(f"uBill refused: {body}")
    return int(body["smsID"])


async def _startup(ctx: dict[str, Any]) -> None:
    ctx["session"] = aiohttp.ClientSession()
    ctx["ubill_url"] = os.environ.get("BENCH_ARQ_UBILL_URL", "").rstrip("/")
    ctx["ubill_key"] = os.environ.get("BENCH_ARQ_UBILL_KEY", "")


async def _shutdown(ctx: dict[str, Any]) -> None:
    await ctx["session"].close()


def job_record(function: str, args: tuple[Any, ...], enqueue_ms: int) -> bytes:
    """What ``ArqRedis.enqueue_job`` stores under ``arq:job:<id>`` (default pickle serializer)."""
    return serialize_job(function, args, {}, None, enqueue_ms)


def _redis_settings() -> RedisSettings:
    dsn = os.environ.get("BENCH_ARQ_REDIS")
    if not dsn:
        return RedisSettings(port=1)  # imported for job_record only; a worker started this way fails fast
    return RedisSettings.from_dsn(dsn)


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop, send]
    redis_settings = _redis_settings()
    queue_name = os.environ.get("BENCH_ARQ_QUEUE", "bench:arq:queue")
    poll_delay = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.5"))
    max_jobs = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "10"))
    on_startup = _startup
    on_shutdown = _shutdown
