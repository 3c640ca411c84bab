"""SMS pumping simulation: legitimate sign-ups over many prefixes (~70 % approved) and a bot hammering one
prefix (nothing approved), against a real gateway, worker and sandbox with the default settings.

``python -m ops.bench.pumping`` (``--quick`` for a shorter run) starts its own Redis, sandbox, gateway and
worker (``ops.bench.harness.Bench``) and prints a report; ``tests/verify/test_pumping.py`` runs a small plan
against the test stack. Targets: the bot's prefix is blocked within 50 of its verifications, and no
legitimate verification is refused. Users learn their code from the SMS the sandbox received, and type it
after a human delay; a share of them never does (they gave up, or the SMS was not for them).

Legitimate traffic is skewed on purpose: a few busy prefixes carry more than the guard's minimum of starts
(20) within the run, the rest a handful each, so the rule is tested where it could misfire: on prefixes
with real volume whose approvals lag their starts by the users' typing time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from ops.bench.numbers import mobile_prefixes

__all__ = ["Plan", "simulate"]

CODE_LENGTH = 6


@dataclass(frozen=True)
class Plan:
    duration: float = 40.0  # seconds over which legitimate starts are spread
    legit_prefixes: int = 60
    busy_prefixes: int = 3  # of those, carrying busy_share of the traffic
    busy_share: float = 0.25
    legit_verifications: int = 400
    approve_share: float = 0.7
    approve_delay: tuple[float, float] = (2.0, 8.0)  # seconds from the SMS to the user's check
    bot_start: float = 5.0
    bot_rate: float = 5.0  # verifications per second
    bot_verifications: int = 150

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            duration=12.0, legit_prefixes=20, legit_verifications=120, bot_start=2.0, bot_verifications=60
        )


def _prefixes(count: int, rng: random.Random) -> tuple[list[str], str]:
    """``count`` legitimate 8-digit prefixes and the bot's, all valid Georgian mobile ranges."""
    pool = [f"995{p}{k:02d}" for p in mobile_prefixes() for k in range(100)]
    chosen = rng.sample(pool, count + 1)
    return chosen[:count], chosen[count]


class _Codes:
    """Reads the sandbox's received SMS (as the users' phones) and hands each number its code."""

    def __init__(self, http: aiohttp.ClientSession, sandbox: str) -> None:
        self._http, self._sandbox = http, sandbox
        self.codes: dict[str, str] = {}
        self.received: Counter[str] = Counter()
        self._changed = asyncio.Event()

    async def poll(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            async with self._http.get(f"{self._sandbox}/_sandbox/sends") as response:
                sends = (await response.json())["sends"]
            received: Counter[str] = Counter()
            for send in sends:
                for number in send["numbers"]:
                    received[number] += 1
                    self.codes.setdefault(number, send["text"][:CODE_LENGTH])
            self.received = received
            self._changed.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    async def wait(self, number: str, patience: float = 30.0) -> str | None:
        deadline = time.monotonic() + patience
        while number not in self.codes and time.monotonic() < deadline:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
        return self.codes.get(number)


async def simulate(
    http: aiohttp.ClientSession, gateway: str, sandbox: str, token: str, plan: Plan, seed: int = 7
) -> dict[str, Any]:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    legit_prefixes, bot_prefix = _prefixes(plan.legit_prefixes, rng)
    busy = legit_prefixes[: plan.busy_prefixes]
    outcomes: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    per_prefix: dict[str, Counter[str]] = {p: Counter() for p in legit_prefixes}
    bot: list[tuple[int, float]] = []  # (status, seconds since the bot's start) per bot verification
    codes = _Codes(http, sandbox)
    serial = Counter[str]()

    def new_number(prefix: str) -> str:
        serial[prefix] += 1
        return f"{prefix}{serial[prefix]:04d}"

    async def create(number: str) -> tuple[int, dict[str, Any]]:
        body = {"to": number, "code_length": CODE_LENGTH}
        async with http.post(f"{gateway}/v1/verifications", json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def user(prefix: str, at: float, approves: bool, delay: float) -> None:
        await asyncio.sleep(at)
        number = new_number(prefix)
        status, body = await create(number)
        per_prefix[prefix]["started" if status == 201 else "refused"] += 1
        if status != 201:
            outcomes["refused"] += 1
            refusals[str(body.get("type", status)).rsplit("/", 1)[-1]] += 1
            return
        outcomes["started"] += 1
        if not approves:
            return
        code = await codes.wait(number)
        await asyncio.sleep(delay)
        if code is None:
            outcomes["no_sms"] += 1
            return
        path = f"{gateway}/v1/verifications/{body['id']}/check"
        async with http.post(path, json={"code": code}, headers=headers) as response:
            result = await response.json()
        if result.get("status") == "approved":
            outcomes["approved"] += 1
            per_prefix[prefix]["approved"] += 1

    async def attacker() -> None:
        await asyncio.sleep(plan.bot_start)
        started = time.monotonic()
        for i in range(plan.bot_verifications):
            status, _ = await create(new_number(bot_prefix))
            bot.append((status, time.monotonic() - started))
            await asyncio.sleep(max(0.0, (i + 1) / plan.bot_rate - (time.monotonic() - started)))

    weights = [plan.busy_share / len(busy)] * len(busy) + [
        (1 - plan.busy_share) / (len(legit_prefixes) - len(busy))
    ] * (len(legit_prefixes) - len(busy))
    users = [
        user(
            rng.choices(legit_prefixes, weights)[0],
            rng.uniform(0, plan.duration),
            rng.random() < plan.approve_share,
            rng.uniform(*plan.approve_delay),
        )
        for _ in range(plan.legit_verifications)
    ]
    stop = asyncio.Event()
    poller = asyncio.create_task(codes.poll(stop))
    began = time.monotonic()
    try:
        await asyncio.gather(attacker(), *users)
        await asyncio.sleep(1.0)  # the last SMS reach the sandbox
    finally:
        stop.set()
        await poller
    bot_started = [i for i, (status, _) in enumerate(bot) if status == 201]
    first_refused = next((i for i, (status, _) in enumerate(bot) if status == 429), None)
    busiest = sorted(busy, key=lambda p: -per_prefix[p]["started"])
    return {
        "plan": asdict(plan),
        "seconds": round(time.monotonic() - began, 1),
        "legit": {
            "verifications": plan.legit_verifications,
            "started": outcomes["started"],
            "refused": outcomes["refused"],
            "refused_by_type": dict(refusals),
            "approved": outcomes["approved"],
            "approved_share": round(outcomes["approved"] / max(1, outcomes["started"]), 3),
            "prefixes": len(legit_prefixes),
            "busy_prefixes": [
                {"prefix": p + "xxxx", **per_prefix[p], "approved_share": _share(per_prefix[p])}
                for p in busiest
            ],
        },
        "bot": {
            "prefix": bot_prefix + "xxxx",
            "attempts": len(bot),
            "verifications_before_block": len(bot_started) if first_refused is None else first_refused,
            "started": len(bot_started),
            "refused": sum(1 for status, _ in bot if status == 429),
            "blocked_after_s": None if first_refused is None else round(bot[first_refused][1], 2),
            "sms_received_by_ubill": sum(
                n for number, n in codes.received.items() if number.startswith(bot_prefix)
            ),
        },
    }


def _share(counts: Counter[str]) -> float:
    return round(counts["approved"] / max(1, counts["started"]), 3)


def verdict(report: dict[str, Any]) -> dict[str, bool]:
    return {
        "bot blocked within 50 of its verifications": report["bot"]["refused"] > 0
        and report["bot"]["verifications_before_block"] <= 50,
        "no legitimate verification refused": report["legit"]["refused"] == 0,
    }


async def _main(quick: bool) -> dict[str, Any]:
    from ops.bench.harness import TOKEN, Bench  # noqa: PLC0415 - the test imports this module without it

    async with Bench(quick=quick, pin_cpus=False) as bench:
        gateway = await bench.start_gateway()
        await bench.start_worker()
        plan = Plan.quick() if quick else Plan()
        report = await simulate(bench.http, gateway.url, bench.sandbox_url, TOKEN, plan)
    report["verdict"] = verdict(report)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.pumping", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a shorter plan (~15 s)")
    args = parser.parse_args(argv)
    report = asyncio.run(_main(args.quick))
    print(json.dumps(report, indent=2))
    raise SystemExit(0 if all(report["verdict"].values()) else 1)


if __name__ == "__main__":
    main()
