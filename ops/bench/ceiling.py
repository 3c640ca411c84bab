"""What one Redis carries: end to end (accept → uBill → ``sent`` and ``delivered`` callbacks → events) with
several gateway and worker processes on one Redis, and Redis' CPU per message.

As many gateways and workers as the machine has room for (half the CPUs each, at least two of each) share one
Redis (AOF ``appendfsync always``); one load generator per gateway sends single-recipient messages in
production shape as fast as they are answered for a few seconds; uBill (the sandbox) answers at once, so no
stage waits on the network and the run is as CPU-bound as it can be; callbacks go to the first gateway. The
window closes once every message's two callbacks were answered (``ops.bench.e2e``; no ``SLOWLOG``, so Redis'
CPU is its own). Messages/s = messages ÷ (first request → last callback).

Redis runs commands on one thread: 1 s of Redis CPU per second is its ceiling, so 1 ÷ (Redis CPU per message)
is how many messages per second one Redis primary carries at most, whatever the number of gateways and
workers (AOF fsyncs are grouped per event-loop pass and cost mostly wait, not CPU). On a small machine the
gateways and workers use the CPUs first, so the ceiling is extrapolated from the per-message cost.

Baseline: ``ops.bench.baseline_app`` (aiohttp + one ZADD per request) under the same kind of load on the same
Redis: the least Redis work an accepted request can cost.
"""

from __future__ import annotations

import os
from typing import Any

from ops.bench.e2e import end_to_end
from ops.bench.harness import BENCH_CLIENT_NAME, TOKEN, Bench
from ops.bench.loadgen import LoadSpec, pick_generator
from ops.bench.numbers import mobile_prefixes
from ops.bench.redisstats import RedisWindow
from ops.bench.report import Row

__all__ = ["run"]

CONNECTIONS = 32  # per gateway


def processes() -> int:
    return max(2, len(os.sched_getaffinity(0)) // 2)


async def _baseline(bench: Bench, generator: str, seconds: float) -> dict[str, Any]:
    await bench.reset()
    app = await bench.start_baseline_app()
    window = RedisWindow(bench.redis, bench.redis_pid, bench.redis_server.data_dir, BENCH_CLIENT_NAME)
    try:
        await window.start()
        load = await bench.load(
            generator,
            app.url,
            LoadSpec("messages", token=TOKEN, prefixes=mobile_prefixes()),
            connections=CONNECTIONS * processes(),
            duration=seconds,
            pinned=False,
        )
        cost = await window.stop(load.requests)
    finally:
        bench.stop(app.name)
    return {**load.as_dict(), "per_request": cost}


async def run(bench: Bench, generator: str) -> tuple[list[Row], dict[str, Any]]:
    generator = pick_generator(generator)
    seconds = 1.0 if bench.quick else 3.0
    n = processes()
    base = await _baseline(bench, generator, seconds)
    e2e = await end_to_end(
        bench,
        generator,
        gateways=n,
        workers=n,
        connections=CONNECTIONS,
        duration=seconds,
        rate=None,
        latency=0.0,
        slowlog=False,
        limit=180.0,
    )
    cpu_us = e2e["per_message"]["redis_cpu_us_per_unit"]
    base_us = base["per_request"]["redis_cpu_us_per_unit"]
    label = "aiohttp + 1 ZADD (accept only)"
    rows = [
        Row(
            f"One Redis, end to end, {n} gateways + {n} workers",
            e2e["messages_per_s"],
            "msg/s",
            base["rps"],
            label,
            baseline_unit="req/s",
        ),
        Row("Redis CPU per message, end to end", cpu_us, "us", base_us, label + ", per request"),
        Row(
            "One Redis core's ceiling (1 s / Redis CPU per message)",
            round(1e6 / cpu_us) if cpu_us else None,
            "msg/s",
            round(1e6 / base_us) if base_us else None,
            label,
            baseline_unit="req/s",
        ),
    ]
    details = {"processes_each": n, "end_to_end": e2e, "baseline": base}
    return rows, details
