"""Figure 1 — accept throughput: ``POST /v1/messages`` with one recipient, 64 connections, one process.

The gateway and the baseline app (``ops.bench.baseline_app``: one ZADD per request) take turns against the
same Redis with the same load generator; with two or more CPUs the server is pinned to one CPU and the load
generator to another, so each server gets the same one core. Target: gateway >= 0.6x the baseline, and no
answer other than 202.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ops.bench.harness import TOKEN, Bench
from ops.bench.loadgen import describe, pick_generator, run_load
from ops.bench.numbers import mobile_prefixes
from ops.bench.report import Row

__all__ = ["run"]

CONNECTIONS = 64
TARGET_RATIO = 0.6


async def run(bench: Bench, generator: str) -> tuple[list[Row], dict[str, Any]]:
    generator = pick_generator(generator)
    duration = 4.0 if bench.quick else 10.0
    warmup = 1.0 if bench.quick else 2.0
    prefixes = mobile_prefixes()
    await bench.reset()
    bench.pin_redis(bench.load_cpus)
    results: dict[str, Any] = {}
    try:
        for name in ("baseline", "gateway"):
            await bench.flush()
            if name == "gateway":
                proc = await bench.start_gateway(cpus=bench.server_cpus)
            else:
                proc = await bench.start_baseline_app(cpus=bench.server_cpus)
            url = proc.url + "/v1/messages"
            await run_load(
                generator,
                url,
                TOKEN,
                prefixes,
                connections=CONNECTIONS,
                duration=warmup,
                workdir=bench.workdir,
                cpus=bench.load_cpus,
            )
            await asyncio.sleep(0.3)
            cpu_before = proc.cpu_seconds()
            counters = await bench.redis_counters()
            redis_cpu = bench.cpu_times()["redis"]
            load = await run_load(
                generator,
                url,
                TOKEN,
                prefixes,
                connections=CONNECTIONS,
                duration=duration,
                workdir=bench.workdir,
                cpus=bench.load_cpus,
            )
            cpu = proc.cpu_seconds() - cpu_before
            results[name] = {
                **load.as_dict(),
                "server_cpu_s": round(cpu, 2),
                "server_cpu_per_request_us": round(cpu / max(1, load.requests) * 1e6, 1),
                "redis_cpu_per_request_us": round(
                    (bench.cpu_times()["redis"] - redis_cpu) / max(1, load.requests) * 1e6, 1
                ),
                "per_request": await bench.redis_cost(counters, load.requests),
            }
            bench.stop(proc.name)
    finally:
        bench.pin_redis(None)
    gateway, baseline = results["gateway"], results["baseline"]
    ratio = gateway["rps"] / baseline["rps"] if baseline["rps"] else 0.0
    clean = gateway["non_202"] == 0 and gateway["socket_errors"] == 0
    rows = [
        Row(
            "Accept throughput, 1 recipient/request, 64 conns",
            gateway["rps"],
            "req/s",
            baseline["rps"],
            "aiohttp + 1 ZADD",
            f">= {TARGET_RATIO}x baseline",
            ratio >= TARGET_RATIO,
            round(ratio, 3),
        ),
        Row(
            "Accept: answers other than 202 (+ socket errors)",
            gateway["non_202"] + gateway["socket_errors"],
            "",
            baseline["non_202"] + baseline["socket_errors"],
            "aiohttp + 1 ZADD",
            "0",
            clean,
        ),
    ]
    details = {
        "generator": describe(generator),
        "connections": CONNECTIONS,
        "duration_s": duration,
        "warmup_s": warmup,
        "server_cpus": sorted(bench.server_cpus or []),
        "load_and_redis_cpus": sorted(bench.load_cpus or []),
        **results,
    }
    return rows, details
