"""Workers that scale out: uBill calls in flight across the cluster with 1, 2, 4 and 8 worker processes.

Each worker has 20 transactional slots (``SMSGW_CONCURRENCY_TRANSACTIONAL=20``), uBill (the sandbox) answers
in 4 s (quick: 2 s), and more single-recipient messages are due than all workers together have slots. Once
every worker is ready, the bench waits a second, reads the first worker's queue gauges (``/metrics``) and
stops the workers (their in-flight calls finish). Calls in flight at that moment are counted from the
sandbox's own ``received`` stamps (a call is in flight from its stamp until the latency has passed), so the
figure is what uBill saw, not what the workers think. Linear growth means in-flight = workers x 20.

The gauge check: ``smsgw_queue_units`` must count waiting work only (due and not running) = queued - in
flight; running units are leased ahead of now and counted in ``smsgw_queue_scheduled_units``.

Baseline: the same slots (workers x 20); and, in the full run, stock arq workers (arq's CLI, ``max_jobs`` 20,
every other default) on the same kind of queue at 8 workers, whose 100-job read window was issue 10's
finding.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from arq.constants import job_key_prefix

from ops.bench.arq_baseline import job_record
from ops.bench.e2e import metric_sum, metrics_text
from ops.bench.fill import queued
from ops.bench.harness import Bench
from ops.bench.procs import wait_http
from ops.bench.report import Row

__all__ = ["run"]

SLOTS = 20
WORKERS = (1, 2, 4, 8)
QUICK_WORKERS = (1, 4)
TEXT = "Bench scale-out: your parcel is on its way"
ARQ_QUEUE = "bench:arq:scale"


def in_flight(sends: list[dict[str, Any]], at: float, latency: float) -> int:
    """Calls the sandbox had received and not yet answered at epoch ``at``."""
    return sum(1 for s in sends if s["received"] <= at < s["received"] + latency)


async def _product(bench: Bench, workers: int, messages: int, latency: float) -> dict[str, Any]:
    await bench.reset()
    await bench.sandbox_patch(latency=latency)
    await bench.post_many(
        [{"to": bench.numbers.take(1), "text": TEXT} for _ in range(messages)], concurrency=16
    )
    names = [f"scale-worker-{i}" for i in range(workers)]
    env = {"SMSGW_CONCURRENCY_TRANSACTIONAL": str(SLOTS)}
    try:
        for name in names:
            await bench.start_worker(name, env=env, wait=False)
        for name in names:
            await wait_http(bench.procs[name], "/readyz")
        await asyncio.sleep(1.0)
        text = await metrics_text(bench, bench.procs[names[0]])
        at = time.time()
        running = 0.0
        for name in names:
            running += metric_sum(
                await metrics_text(bench, bench.procs[name]),
                "smsgw_worker_jobs_running",
                lane="transactional",
            )
        due = await queued(bench)
    finally:
        bench.stop_many(names)
    sends = await bench.sandbox_sends()
    flight = in_flight(sends, at, latency)
    await bench.sandbox_patch(latency=0.0)
    return {
        "workers": workers,
        "slots": workers * SLOTS,
        "messages_queued": messages,
        "in_flight_at_sandbox": flight,
        "jobs_running_gauges_sum": int(running),
        "queue_units_gauge": int(metric_sum(text, "smsgw_queue_units", lane="transactional")),
        "queue_scheduled_units_gauge": int(
            metric_sum(text, "smsgw_queue_scheduled_units", lane="transactional")
        ),
        "due_units_read_by_bench": due,
        "waiting_expected": messages - flight,
    }


async def _arq(bench: Bench, workers: int, messages: int, latency: float) -> dict[str, Any]:
    await bench.reset()
    await bench.sandbox_patch(latency=latency)
    now = int(time.time() * 1000)
    async with bench.redis.pipeline(transaction=False) as pipe:
        for number in bench.numbers.take(messages):
            job_id = uuid.uuid4().hex
            pipe.psetex(job_key_prefix + job_id, 86_400_000, job_record("send", ([number], TEXT, False), now))
            pipe.zadd(ARQ_QUEUE, {job_id: now})
        await pipe.execute()
    names = [f"arq-scale-{i}" for i in range(workers)]
    try:
        for name in names:
            await bench.start_arq(name, ARQ_QUEUE, poll_delay=0.5, max_jobs=SLOTS, wait=False)
        await asyncio.sleep(latency * 0.75 + 2.0)  # every worker started and read the queue at least once
        at = time.time()
    finally:
        bench.stop_many(names)
    sends = await bench.sandbox_sends()
    await bench.sandbox_patch(latency=0.0)
    return {"workers": workers, "max_jobs": SLOTS, "in_flight_at_sandbox": in_flight(sends, at, latency)}


async def run(bench: Bench) -> tuple[list[Row], dict[str, Any]]:
    counts = QUICK_WORKERS if bench.quick else WORKERS
    latency = 2.0 if bench.quick else 4.0
    messages = int(max(counts) * SLOTS * 2.5)
    await bench.reset()
    await bench.start_gateway()
    try:
        runs = [await _product(bench, n, messages, latency) for n in counts]
    finally:
        bench.stop("gateway")
    arq = None if bench.quick else await _arq(bench, max(counts), messages, latency)
    rows = []
    for r in runs:
        rows.append(
            Row(
                f"Calls in flight at uBill, {r['workers']} worker(s) x {SLOTS} slots, uBill {latency:g} s",
                r["in_flight_at_sandbox"],
                "",
                r["slots"],
                "slots across the workers",
                "= slots (linear)",
                r["in_flight_at_sandbox"] >= 0.95 * r["slots"],
                round(r["in_flight_at_sandbox"] / r["slots"], 3),
            )
        )
    if arq is not None:
        last = runs[-1]
        rows.append(
            Row(
                f"Calls in flight, {last['workers']} workers x {SLOTS}, beside stock arq",
                last["in_flight_at_sandbox"],
                "",
                arq["in_flight_at_sandbox"],
                f"stock arq, {arq['workers']} workers x max_jobs {SLOTS}",
            )
        )
    last = runs[-1]
    gauge_ok = abs(last["queue_units_gauge"] - last["waiting_expected"]) <= max(
        2, 0.02 * last["waiting_expected"]
    )
    rows.append(
        Row(
            f"smsgw_queue_units (transactional), {last['workers']} workers busy",
            last["queue_units_gauge"],
            "units",
            last["waiting_expected"],
            "queued - in flight (waiting work)",
            "= waiting work",
            gauge_ok,
        )
    )
    details = {"slots_per_worker": SLOTS, "uBill_latency_s": latency, "runs": runs, "stock_arq": arq}
    return rows, details
