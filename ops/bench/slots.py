"""Single-recipient dispatch rate of one worker process at 50 ms uBill latency, by transactional slot count.

Single-recipient transactional messages are queued through the gateway with no worker running (callbacks off),
enough for every run. Then, for each slot count, one ``smsgw worker`` with ``SMSGW_CONCURRENCY_TRANSACTIONAL``
set to it (everything else default) runs for a fixed time and is stopped; the next one continues on the same
queue. Rate: numbers the sandbox received from the first call to the last, over that time (its own
``received`` stamps); the worker's CPU over the same time. A slot waits on one uBill call, so a worker with
``s`` slots can make at most ``s / 50 ms`` calls per second; past that its CPU (or the machine) is the limit.

Baseline, per slot count: ``ops.bench.ubill_client``, a bare aiohttp client keeping as many calls in flight
against the same sandbox (no Redis, no bookkeeping): what the HTTP calls alone allow on this machine.
Target: >= 2,000 messages/s per worker process at the default slot count.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from ops.bench.fill import fill, queued
from ops.bench.harness import UBILL_KEY, Bench
from ops.bench.loadgen import pick_generator
from ops.bench.numbers import mobile_prefixes
from ops.bench.procs import ROOT
from ops.bench.report import Row
from smsgw.settings import Settings

__all__ = ["run"]

LATENCY = 0.05
TARGET_RPS = 2_000.0
SLOTS = (32, 64, 128, 256, 512)
QUICK_SLOTS = (32, 256)
ASSUMED_CAP = 3_000.0  # messages/s a worker might reach: sizes the queue (checked after each run)


def default_slots() -> int:
    return int(Settings().concurrency["transactional"])


async def _baseline(bench: Bench, concurrency: int, seconds: float) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "ops.bench.ubill_client",
        "--url",
        bench.sandbox_url + "/v1",
        "--key",
        UBILL_KEY,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(seconds),
        "--prefixes",
        ",".join(map(str, mobile_prefixes())),
    ]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT
    )
    out, err = await process.communicate()
    line = next((ln for ln in out.decode().splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"ubill_client failed: {err.decode()[-500:]}")
    data = json.loads(line.removeprefix("BENCHJSON "))
    await bench.sandbox_clear()
    return {**data, "calls_per_s": round(data["calls"] / (data["duration_us"] / 1e6), 1)}


async def _worker_run(bench: Bench, slots: int, seconds: float) -> dict[str, Any]:
    await bench.sandbox_clear()
    before = await queued(bench)
    worker = await bench.start_worker(
        f"worker-{slots}-slots", env={"SMSGW_CONCURRENCY_TRANSACTIONAL": str(slots)}
    )
    cpu = worker.cpu_seconds()
    ready = time.monotonic()
    await asyncio.sleep(seconds)
    cpu = worker.cpu_seconds() - cpu
    wall = time.monotonic() - ready
    bench.stop(worker.name)
    left = await queued(bench)
    sends = sorted(await bench.sandbox_sends(), key=lambda s: s["received"])
    if len(sends) < 2:
        raise RuntimeError(f"worker with {slots} slots made {len(sends)} calls")
    first, last = sends[0]["received"], sends[-1]["received"]
    sent = sum(len(s["numbers"]) for s in sends)
    return {
        "slots": slots,
        "messages": sent,
        "messages_per_s": round((sent - len(sends[0]["numbers"])) / (last - first), 1)
        if last > first
        else 0.0,
        "ceiling_slots_over_latency": round(slots / LATENCY, 1),
        "worker_cpu_percent_of_core": round(cpu / wall * 100, 1),
        "worker_cpu_us_per_message": round(cpu / max(1, sent) * 1e6, 1),
        "queued_before": before,
        "queued_after": left,
        "ran_dry": left == 0,
    }


async def run(bench: Bench, generator: str) -> tuple[list[Row], dict[str, Any]]:
    generator = pick_generator(generator)
    default = default_slots()
    counts = sorted({default, *(QUICK_SLOTS if bench.quick else SLOTS)})
    seconds = 1.0 if bench.quick else 2.5
    await bench.reset()
    await bench.sandbox_patch(latency=LATENCY)
    try:
        gateway = await bench.start_gateway()
        needed = int(sum(min(ASSUMED_CAP, s / LATENCY) for s in counts) * (seconds + 0.5))
        have = await fill(bench, generator, gateway, needed)
        bench.stop(gateway.name)
        runs = [await _worker_run(bench, s, seconds) for s in counts]
        base = [await _baseline(bench, s, seconds) for s in counts]
    finally:
        await bench.sandbox_patch(latency=0.0)
    rows = []
    for r, b in zip(runs, base, strict=True):
        is_default = r["slots"] == default
        rows.append(
            Row(
                f"Dispatch, 1-recipient messages, {r['slots']} transactional slots"
                + (" (default)" if is_default else "")
                + ", uBill 50 ms",
                r["messages_per_s"],
                "msg/s",
                b["calls_per_s"],
                f"bare aiohttp client, {r['slots']} calls in flight",
                f">= {TARGET_RPS:,.0f}/s" if is_default else "-",
                r["messages_per_s"] >= TARGET_RPS if is_default else None,
                round(r["messages_per_s"] / b["calls_per_s"], 3) if b["calls_per_s"] else None,
                baseline_unit="calls/s",
            )
        )
    at_default = next(r for r in runs if r["slots"] == default)
    rows.append(
        Row(
            f"Worker CPU while dispatching at {default} slots (default)",
            at_default["worker_cpu_percent_of_core"],
            "% core",
            None,
            "-",
        )
    )
    details = {
        "uBill_latency_s": LATENCY,
        "seconds_per_run": seconds,
        "default_transactional_slots": default,
        "queued_at_start": have,
        "runs": runs,
        "baseline": base,
    }
    return rows, details
