"""Figure 4 — dispatch throughput of one worker process against a uBill answering every call in 50 ms.

Work is queued through the gateway with no worker running (callbacks off: the sandbox has no callback URL),
then one ``smsgw worker`` starts and the bench polls ``/_sandbox/counts`` until every recipient arrived. The
rate is taken from the sandbox's own receive stamps: first call to last call (steady state), and from the
worker's spawn (start-up included). Target: >= 2,000 recipients/s per worker process for 1,000-recipient
messages. Single-recipient messages have their own figure, by slot count (``slots.py``).

Baseline: one stock arq worker (arq's CLI, every default: ``poll_delay`` 0.5, ``max_jobs`` 10) draining
no-op jobs written ahead of time, for at most a fixed time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from arq.constants import job_key_prefix

from ops.bench.arq_baseline import job_record
from ops.bench.harness import Bench
from ops.bench.report import Row

__all__ = ["run"]

SANDBOX_LATENCY = 0.05
TARGET_RPS = 2_000.0
TEXT = "Bench dispatch: your parcel is on its way"
ARQ_QUEUE = "bench:arq:noop"


async def _drain(bench: Bench, bodies: list[dict[str, Any]], limit: float) -> dict[str, Any]:
    await bench.reset()
    await bench.sandbox_patch(latency=SANDBOX_LATENCY)
    await bench.start_gateway()
    try:
        await bench.post_many(bodies, concurrency=16)
    finally:
        bench.stop("gateway")
    total = sum(len(b["to"]) for b in bodies)
    counters = await bench.redis_counters()
    spawned = time.time()
    worker = await bench.start_worker()
    ready = time.time()
    cpu_ready = worker.cpu_seconds()
    shares_before, clock = bench.cpu_times(), time.monotonic()
    deadline = time.monotonic() + limit
    try:
        while (seen := await bench.sandbox_numbers()) < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {seen} of {total} recipients reached the sandbox in {limit:g}s")
            await asyncio.sleep(0.25)
        cpu = worker.cpu_seconds() - cpu_ready
        shares = bench.cpu_shares(shares_before, bench.cpu_times(), time.monotonic() - clock)
    finally:
        bench.stop("worker")
        await bench.sandbox_patch(latency=0.0)
    cost = await bench.redis_cost(counters, total)
    sends = sorted(await bench.sandbox_sends(), key=lambda s: s["received"])
    first, last = sends[0]["received"], sends[-1]["received"]
    sent = sum(len(s["numbers"]) for s in sends)
    steady = (sent - len(sends[0]["numbers"])) / (last - first) if last > first else 0.0
    return {
        "recipients": total,
        "messages": len(bodies),
        "calls": len(sends),
        "recipients_received": sent,
        "duplicates": sent - total,
        "recipients_per_s_steady": round(steady, 1),
        "recipients_per_s_from_spawn": round(sent / (last - spawned), 1),
        "worker_start_s": round(ready - spawned, 2),
        "first_call_after_spawn_s": round(first - spawned, 2),
        "drain_s": round(last - first, 2),
        "worker_cpu_s_after_ready": round(cpu, 2),
        "worker_cpu_ms_per_call": round(cpu / len(sends) * 1000, 2),
        "cpu_percent_of_core_while_draining": shares,
        "per_recipient": cost,
    }


async def _arq_noop(bench: Bench, jobs: int, cap: float, poll_delay: float) -> dict[str, Any]:
    await bench.flush()
    now = int(time.time() * 1000)
    record = job_record("noop", (), now)
    async with bench.redis.pipeline(transaction=False) as pipe:
        for _ in range(jobs):
            job_id = uuid.uuid4().hex
            pipe.psetex(job_key_prefix + job_id, 86_400_000, record)
            pipe.zadd(ARQ_QUEUE, {job_id: now})
        await pipe.execute()
    spawned = time.monotonic()
    task = asyncio.create_task(bench.start_arq("arq-noop", ARQ_QUEUE, poll_delay=poll_delay))
    first: float | None = None
    left = jobs
    while True:
        left = int(await bench.redis.zcard(ARQ_QUEUE))
        now_s = time.monotonic()
        if first is None and left < jobs:
            first = now_s
        if left == 0 or (first is not None and now_s - first >= cap) or now_s - spawned > cap + 30:
            break
        await asyncio.sleep(0.02)
    await task
    bench.stop("arq-noop")
    done = jobs - left
    elapsed = (now_s - first) if first is not None else 0.0
    return {
        "jobs_queued": jobs,
        "jobs_done": done,
        "seconds": round(elapsed, 2),
        "time_cap_s": cap,
        "jobs_per_s": round(done / elapsed, 1) if elapsed else 0.0,
        "poll_delay": poll_delay,
        "settings": "arq CLI defaults otherwise: max_jobs 10, queue_read_limit 100, pickle, keep_result 3600",
    }


async def run(bench: Bench) -> tuple[list[Row], dict[str, Any]]:
    bulk_messages = 5 if bench.quick else 20
    phases: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        phases[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    bulk = [{"to": bench.numbers.take(1_000), "text": TEXT, "priority": "bulk"} for _ in range(bulk_messages)]
    many = await _drain(bench, bulk, limit=120)
    lap("bulk")
    jobs, cap = (5_000, 2.0) if bench.quick else (20_000, 8.0)
    arq_default = await _arq_noop(bench, jobs, cap, poll_delay=0.5)
    lap("arq_default")
    arq_fast = await _arq_noop(bench, jobs, cap, poll_delay=0.0)
    lap("arq_poll_delay_0")
    # The stronger of the two stock arq figures is the baseline; the default one is named beside it.
    baseline = arq_fast["jobs_per_s"]
    label = f"stock arq, no-op jobs, poll_delay 0 (default 0.5: {arq_default['jobs_per_s']:,.0f}/s)"
    rows = [
        Row(
            f"Dispatch, {bulk_messages} bulk x 1,000 recipients, uBill 50 ms",
            many["recipients_per_s_steady"],
            "recipients/s",
            baseline,
            label,
            f">= {TARGET_RPS:,.0f}/s",
            many["recipients_per_s_steady"] >= TARGET_RPS,
            baseline_unit="jobs/s",
        ),
    ]
    details = {
        "sandbox_latency_s": SANDBOX_LATENCY,
        "callbacks": "off",
        "bulk_1000": many,
        "arq_noop_baseline_default": arq_default,
        "arq_noop_baseline_poll_delay_0": arq_fast,
        "phase_seconds": phases,
    }
    return rows, details
