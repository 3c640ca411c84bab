"""Verification latency: ``POST /v1/verifications`` answered (201) → the SMS at uBill (the sandbox's
``received`` stamp), idle and behind a bulk backlog, beside a plain OTP send (``POST /v1/messages``,
``priority: otp``) measured in the same run under the same conditions (figure 3 of ``ops.bench``).

``python -m ops.bench.verify_latency [--quick]`` starts its own Redis, sandbox, gateway and worker (default
settings) and prints a table. Verifications and plain OTPs alternate, one at a time, 10-30 ms apart; the
backlog phase keeps at least 10,000 bulk recipients queued ahead (``ops.bench.otp``'s feeder) with uBill
answering in 50 ms. Every verification is approved afterwards with the code its SMS carried (as a user would),
so the pumping guard sees normal traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

from ops.bench.harness import TOKEN, Bench
from ops.bench.otp import (
    BULK_MESSAGE,
    BULK_TEXT,
    LOW_WATER,
    OTP_TEXT,
    PREQUEUE_QUICK,
    SANDBOX_LATENCY,
    UNIT,
    Stamp,
    _receipts,
    _with_backlog,
)
from ops.bench.report import summary
from smsgw.store import keys

__all__ = ["run"]

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


class _Run:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.ids: dict[str, str] = {}

    async def verification(self, number: str) -> tuple[float, float]:
        started = time.time()
        async with self.bench.http.post(
            self.bench.procs["gateway"].url + "/v1/verifications", json={"to": number}, headers=HEADERS
        ) as response:
            answered = time.time()
            body = await response.json()
        if response.status != 201:
            raise RuntimeError(f"gateway answered {response.status}: {body}")
        self.ids[number] = body["id"]
        return started, answered

    async def otp(self, number: str) -> tuple[float, float]:
        posted = await self.bench.post({"to": [number], "text": OTP_TEXT, "priority": "otp"})
        if posted.status != 202:
            raise RuntimeError(f"gateway answered {posted.status}")
        return posted.started, posted.answered

    async def alternate(self, count: int) -> tuple[list[Stamp], list[Stamp]]:
        rng = random.Random(11)
        verifications: list[Stamp] = []
        otps: list[Stamp] = []
        for i, number in enumerate(self.bench.numbers.take(2 * count)):
            if i % 2 == 0:
                verifications.append((number, *await self.verification(number)))
            else:
                otps.append((number, *await self.otp(number)))
            await asyncio.sleep(rng.uniform(0.010, 0.030))
        return verifications, otps

    async def approve(self) -> int:
        """Check every verification with the code its SMS carried."""
        texts = {n: s["text"] for s in await self.bench.sandbox_sends() for n in s["numbers"]}
        approved = 0
        for number, verification_id in self.ids.items():
            async with self.bench.http.post(
                f"{self.bench.procs['gateway'].url}/v1/verifications/{verification_id}/check",
                json={"code": texts[number][:6]},
                headers=HEADERS,
            ) as response:
                approved += (await response.json()).get("status") == "approved"
        self.ids.clear()
        return approved


async def run(bench: Bench) -> dict[str, Any]:
    count = 40 if bench.quick else 150
    await bench.reset()
    await bench.start_gateway()
    await bench.start_worker()
    runner = _Run(bench)
    out: dict[str, Any] = {"per_case": count}
    try:
        await runner.alternate(5)  # warm-up
        await asyncio.sleep(0.3)
        await runner.approve()
        await bench.sandbox_clear()
        verifications, otps = await runner.alternate(count)
        out["idle"] = {
            "verification": await _receipts(bench, verifications),
            "otp": await _receipts(bench, otps),
        }
        out["idle_approved"] = await runner.approve()
        await bench.sandbox_clear()

        bench.stop("worker")
        await bench.sandbox_patch(latency=SANDBOX_LATENCY)

        async def depth() -> int:
            return int(await bench.redis.zcard(keys.lane_queue("bulk"))) * UNIT

        async def top_up(recipients: int) -> None:
            messages = max(1, -(-recipients // BULK_MESSAGE))
            await bench.post_many(
                [
                    {"to": bench.numbers.take(BULK_MESSAGE), "text": BULK_TEXT, "priority": "bulk"}
                    for _ in range(messages)
                ],
                concurrency=2,
            )

        await top_up(PREQUEUE_QUICK)
        await bench.start_worker()
        pair: list[tuple[list[Stamp], list[Stamp]]] = []

        async def both() -> list[Stamp]:
            pair.append(await runner.alternate(count))
            return pair[0][0]

        _, depths = await _with_backlog(depth, top_up, both, low_water=LOW_WATER)
        busy_verifications, busy_otps = pair[0]
        out["busy"] = {
            "verification": await _receipts(bench, busy_verifications),
            "otp": await _receipts(bench, busy_otps),
        }
        out["busy_backlog_recipients"] = summary(depths, 0)
        await bench.sandbox_patch(latency=0.0)
        out["busy_approved"] = await runner.approve()
    finally:
        bench.stop("worker")
        bench.stop("gateway")
    return out


def _table(out: dict[str, Any]) -> str:
    key = "answered_to_ubill_ms"
    lines = [
        "| case | verification 201 → uBill p50 / p99 (ms) | plain OTP 202 → uBill p50 / p99 (ms) |",
        "|---|---|---|",
    ]
    for case, label in (("idle", "idle"), ("busy", "≥ 10,000 bulk recipients queued, uBill at 50 ms")):
        v, o = summary(out[case]["verification"][key]), summary(out[case]["otp"][key])
        lines.append(f"| {label} | {v['p50']} / {v['p99']} | {o['p50']} / {o['p99']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.verify_latency", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="40 of each instead of 150")
    args = parser.parse_args(argv)

    async def go() -> dict[str, Any]:
        async with Bench(quick=args.quick, pin_cpus=False) as bench:
            return await run(bench)

    out = asyncio.run(go())
    details = {
        case: {kind: {k: summary(v) for k, v in out[case][kind].items()} for kind in ("verification", "otp")}
        for case in ("idle", "busy")
    }
    print(json.dumps({**details, "busy_backlog_recipients": out["busy_backlog_recipients"]}, indent=2))
    print(_table(out))


if __name__ == "__main__":
    main()
