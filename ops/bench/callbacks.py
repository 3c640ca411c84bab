"""Callback ingest: uBill's delivery callbacks per second into one gateway process, each applied, with OTP
dispatch latency measured beside it, with and without the flood.

Set-up: transactional messages of 100 recipients (one uBill call each, so the set-up takes a second, not a
minute) are sent with the sandbox's callbacks off and the worker records their smsIDs (the sandbox's record
gives the (smsID, number) pairs). Then a load generator (``callbacks`` shape, 32 connections) fires
``GET /callbacks/ubill`` at the gateway: ``sent`` for every pair, then ``delivered`` for every pair, so each
callback changes a recipient and publishes an event (the JSON counts outcomes from the gateway's own metrics).
Two runs on fresh pairs: flat out (the capacity, and the OTPs below), then paced at about the target rate (the
p99 target is a latency at that rate, not at saturation, where 32 connections queue by construction). The
gateway is pinned to the first CPU, the load generator and Redis to the last, as in the accept figure; the
worker and the sandbox float.

OTP latency, 202 → the sandbox's ``received`` stamp (and request sent → ``received``), is measured with OTPs
one at a time 10-30 ms apart (as in the OTP figure), first without the flood, then during it, through the same
gateway and worker.

Baseline: ``ops.bench.baseline_app``'s ``GET /callbacks/ubill`` (one ZADD per callback) under the same two
loads. Targets: >= 3,000 callbacks/s per gateway process, every one applied, p99 <= 20 ms at ~3,000/s; OTP p99
during the flood <= 100 ms (the target under a bulk backlog).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

from ops.bench import otp
from ops.bench.e2e import metric_sum, metrics_text
from ops.bench.harness import CALLBACK_KEY, Bench
from ops.bench.loadgen import LoadSpec, pick_generator
from ops.bench.procs import Proc
from ops.bench.report import Row, summary
from smsgw.ubill import DATE_FORMAT, format_local

__all__ = ["run"]

CONNECTIONS = 32
TARGET_RPS = 3_000.0
TARGET_P99_MS = 20.0
TARGET_OTP_P99_MS = 100.0
UNIT = 100
# The p99 target is for the target rate: 32 connections each waiting 32/PACED_RPS s between requests give
# about 3,000/s once the answer times are added (the JSON has the rate reached: gateway_paced.rps).
PACED_RPS = 4_000.0
MAX_EXPECTED_RPS = 8_000.0  # sizes the set-up; the JSON says if the flood ran past the new statuses
TEXT = "Bench callbacks: your parcel is on its way"


async def _otps(bench: Bench, count: int) -> dict[str, dict[str, float | int]]:
    await bench.sandbox_clear()
    stamps = await otp._spaced(count, lambda n: otp._gateway_otp(bench, n), bench)
    return {k: summary(v) for k, v in (await otp._receipts(bench, stamps)).items()}


async def _pairs(bench: Bench, expected: int, limit: float = 60.0) -> list[tuple[int, str]]:
    deadline = time.monotonic() + limit
    while (seen := await bench.sandbox_numbers()) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {seen} of {expected} messages reached the sandbox")
        await asyncio.sleep(0.25)
    await asyncio.sleep(0.5)  # the last answers are recorded (settled) by the worker
    return [(s["sms_id"], n) for s in await bench.sandbox_sends() for n in s["numbers"]]


async def _write_pairs(bench: Bench, name: str, pairs: list[tuple[int, str]]) -> str:
    path = bench.workdir / f"callback-pairs-{name}.txt"
    path.write_text("".join(f"{sms},{number}\n" for sms, number in pairs))
    return str(path)


async def _outcomes(bench: Bench, gateway: Proc, before: str) -> dict[str, int]:
    after = await metrics_text(bench, gateway)
    return {
        o: int(
            metric_sum(after, "smsgw_callbacks_total", outcome=o)
            - metric_sum(before, "smsgw_callbacks_total", outcome=o)
        )
        for o in ("applied", "duplicate", "orphaned", "adopted", "ignored", "bad_request", "bad_key")
    }


async def run(bench: Bench, generator: str) -> tuple[list[Row], dict[str, Any]]:
    generator = pick_generator(generator)
    seconds = 1.0 if bench.quick else 4.0
    otp_count = 30 if bench.quick else 100
    # Two callbacks per pair: enough pairs that neither run runs out of new statuses.
    flood_pairs = int(MAX_EXPECTED_RPS * seconds / 2)
    paced_pairs = int(PACED_RPS * 1.2 * seconds / 2)
    await bench.reset()
    bench.pin_redis(bench.load_cpus)
    results: dict[str, Any] = {}
    try:
        gateway = await bench.start_gateway(cpus=bench.server_cpus)
        worker = await bench.start_worker()
        needed = flood_pairs + paced_pairs
        bodies = [{"to": bench.numbers.take(UNIT), "text": TEXT} for _ in range(-(-needed // UNIT))]
        await bench.post_many(bodies, concurrency=4)
        pairs = await _pairs(bench, len(bodies) * UNIT)
        date = format_local(datetime.now(UTC), DATE_FORMAT)
        flood_spec = LoadSpec(
            "callbacks",
            pairs_file=await _write_pairs(bench, "flood", pairs[:flood_pairs]),
            callback_key=CALLBACK_KEY,
            date=date,
        )
        paced_spec = dataclasses.replace(
            flood_spec, pairs_file=await _write_pairs(bench, "paced", pairs[flood_pairs:]), rate=PACED_RPS
        )

        results["otp_without_flood"] = await _otps(bench, otp_count)
        before = await metrics_text(bench, gateway)
        cpu = bench.cpu_times()
        started = time.monotonic()
        flood = asyncio.create_task(
            bench.load(
                generator,
                gateway.url,
                flood_spec,
                connections=CONNECTIONS,
                duration=seconds,
            )
        )
        await asyncio.sleep(0.3)  # the flood is on

        async def otps_during() -> dict[str, dict[str, float | int]]:
            # As many as fit in the flood (the count is recorded); at least a handful.
            await bench.sandbox_clear()
            stamps: list[otp.Stamp] = []
            while not flood.done() or len(stamps) < 5:
                stamps += await otp._spaced(1, lambda n: otp._gateway_otp(bench, n), bench)
            return {k: summary(v) for k, v in (await otp._receipts(bench, stamps)).items()}

        during = asyncio.create_task(otps_during())
        load = await flood
        shares = bench.cpu_shares(cpu, bench.cpu_times(), time.monotonic() - started)
        results["otp_during_flood"] = await during
        outcomes = await _outcomes(bench, gateway, before)
        results["gateway"] = {**load.as_dict(), "outcomes": outcomes, "cpu_percent_of_core": shares}

        before = await metrics_text(bench, gateway)
        paced = await bench.load(
            generator,
            gateway.url,
            paced_spec,
            connections=CONNECTIONS,
            duration=seconds,
        )
        results["gateway_paced"] = {**paced.as_dict(), "outcomes": await _outcomes(bench, gateway, before)}
        bench.stop(worker.name)
        bench.stop(gateway.name)

        base_app = await bench.start_baseline_app(cpus=bench.server_cpus)
        for name, spec in (("baseline", flood_spec), ("baseline_paced", paced_spec)):
            results[name] = (
                await bench.load(
                    generator,
                    base_app.url,
                    spec,
                    connections=CONNECTIONS,
                    duration=seconds,
                )
            ).as_dict()
    finally:
        for name in ("worker", "gateway", "baseline-app"):
            with contextlib.suppress(Exception):
                bench.stop(name)
        bench.pin_redis(None)
    gw, base = results["gateway"], results["baseline"]
    paced, base_paced = results["gateway_paced"], results["baseline_paced"]
    # Every callback answered changes a recipient while a run has not run out of new statuses; the requests
    # still in flight when the generator stopped were applied too (not counted as answered).
    fresh = min(gw["requests"], 2 * flood_pairs) + min(paced["requests"], 2 * (len(pairs) - flood_pairs))
    applied = gw["outcomes"]["applied"] + paced["outcomes"]["applied"]
    all_applied = fresh <= applied <= fresh + 2 * CONNECTIONS
    all_applied = all_applied and not any(r["non_ok"] or r["socket_errors"] for r in (gw, paced))
    idle = results["otp_without_flood"]["answered_to_ubill_ms"]
    busy = results["otp_during_flood"]["answered_to_ubill_ms"]
    idle_sent = results["otp_without_flood"]["sent_to_ubill_ms"]
    busy_sent = results["otp_during_flood"]["sent_to_ubill_ms"]
    rows = [
        Row(
            f"Callback ingest, 1 gateway process, {CONNECTIONS} conns",
            gw["rps"],
            "req/s",
            base["rps"],
            "aiohttp + 1 ZADD",
            f">= {TARGET_RPS:,.0f}/s",
            gw["rps"] >= TARGET_RPS,
            round(gw["rps"] / base["rps"], 3) if base["rps"] else None,
        ),
        Row(
            "Callback ingest, p99 latency, paced to ~3,000/s",
            paced["latency_ms_p99"],
            "ms",
            base_paced["latency_ms_p99"],
            "aiohttp + 1 ZADD, same pacing",
            f"<= {TARGET_P99_MS:g} ms",
            paced["latency_ms_p99"] <= TARGET_P99_MS,
        ),
        Row(
            "Callback ingest, p99 latency, flat out",
            gw["latency_ms_p99"],
            "ms",
            base["latency_ms_p99"],
            "aiohttp + 1 ZADD",
        ),
        Row(
            "Callbacks applied (each a new status of a recorded smsID)",
            applied,
            "",
            fresh,
            "callbacks answered 200 (+ those in flight at the end)",
            "all",
            all_applied,
        ),
        Row(
            "OTP 202->uBill during the callback flood, p50",
            busy.get("p50"),
            "ms",
            idle.get("p50"),
            "the same without the flood",
        ),
        Row(
            "OTP 202->uBill during the callback flood, p99",
            busy.get("p99"),
            "ms",
            idle.get("p99"),
            "the same without the flood",
            f"<= {TARGET_OTP_P99_MS:g} ms",
            (busy.get("p99") or 0) <= TARGET_OTP_P99_MS,
        ),
        Row(
            "OTP request sent->uBill during the callback flood, p99",
            busy_sent.get("p99"),
            "ms",
            idle_sent.get("p99"),
            "the same without the flood",
        ),
    ]
    details = {
        "connections": CONNECTIONS,
        "seconds": seconds,
        "pairs": len(pairs),
        "flood_pairs": flood_pairs,
        "numbers_sent_more_than_once": len(pairs) - len({n for _, n in pairs}),
        "callbacks_that_change_a_recipient": fresh,
        **results,
    }
    return rows, details
