"""Figure 2 — latency of accepting one message with 10,000 distinct recipients (request sent → 202 read).

Beside it, the floor any validating gateway pays: ``phonenumbers`` alone parsing and validating the same
10,000 numbers in this process. Target: median and p90 <= 250 ms.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import phonenumbers

from ops.bench.harness import Bench
from ops.bench.report import Row, percentile, summary

__all__ = ["run"]

RECIPIENTS = 10_000
TARGET_MS = 250.0


def _phonenumbers_only(numbers: list[str]) -> float:
    started = time.perf_counter()
    for number in numbers:
        parsed = phonenumbers.parse("+" + number)
        if not phonenumbers.is_valid_number(parsed):
            raise AssertionError(f"{number} is not valid")
    return (time.perf_counter() - started) * 1000


async def run(bench: Bench) -> tuple[list[Row], dict[str, Any]]:
    runs = 5 if bench.quick else 10
    await bench.reset()
    await bench.start_gateway()
    gateway_ms: list[float] = []
    baseline_ms: list[float] = []
    sizes: list[int] = []
    try:
        for i in range(runs + 1):  # the first run warms the gateway up and is not counted
            numbers = bench.numbers.take(RECIPIENTS)
            posted = await bench.post({"to": numbers, "text": "bench: ten thousand", "priority": "bulk"})
            if posted.status != 202:
                raise RuntimeError(f"gateway answered {posted.status}: {posted.body[:300]!r}")
            baseline = _phonenumbers_only(numbers)
            if i:
                gateway_ms.append((posted.finished - posted.started) * 1000)
                baseline_ms.append(baseline)
                sizes.append(len(posted.body))
    finally:
        bench.stop("gateway")
    median, p90 = statistics.median(gateway_ms), percentile(gateway_ms, 90)
    base_median, base_p90 = statistics.median(baseline_ms), percentile(baseline_ms, 90)
    rows = [
        Row(
            "Accept latency, 10,000 recipients, median",
            round(median, 1),
            "ms",
            round(base_median, 1),
            "phonenumbers parse+validate",
            f"<= {TARGET_MS:g} ms",
            median <= TARGET_MS,
            round(median / base_median, 2),
        ),
        Row(
            "Accept latency, 10,000 recipients, p90",
            round(p90, 1),
            "ms",
            round(base_p90, 1),
            "phonenumbers parse+validate",
            f"<= {TARGET_MS:g} ms",
            p90 <= TARGET_MS,
            round(p90 / base_p90, 2),
        ),
    ]
    details = {
        "runs": runs,
        "recipients": RECIPIENTS,
        "gateway_ms": summary(gateway_ms, 1),
        "phonenumbers_ms": summary(baseline_ms, 1),
        "answer_bytes": int(statistics.median(sizes)),
        "note": "gateway time is request sent -> whole 202 answer read by an aiohttp client in the bench "
        "process (the answer is the full message resource); no worker runs meanwhile",
    }
    return rows, details
