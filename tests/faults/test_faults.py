"""Fault tests with real processes: each counts what uBill (the sandbox) received.

Every test asserts: every accepted recipient ends submitted-or-later, terminal, or (where the contract says
so) ``unknown``; none is lost; no number acknowledged by uBill is sent twice.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from smsgw.devtools.redis import EmbeddedRedis
from tests.harness import Stack, astop, eventually, spawn
from tests.worker.test_lanes import numbers

PROGRESSED = {
    "submitted",
    "sent",
    "pending",
    "delivered",
    "failed",
    "error",
    "rejected",
    "expired",
    "cancelled",
}


def worker(stack: Stack, tmp_path: Path, name: str = "worker") -> subprocess.Popen[bytes]:
    return spawn("worker", stack.env, tmp_path / f"{name}.log")


async def statuses(stack: Stack, ids: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for message_id in ids:
        counts.update(r["status"] for r in (await stack.get(message_id))["recipients"])
    return counts


async def settled(stack: Stack, ids: list[str], allowed: set[str]) -> bool:
    return set(await statuses(stack, ids)) <= allowed


def report(name: str, **figures: Any) -> None:
    print(f"\nFAULT {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


async def test_worker_sigkill_mid_stream_loses_and_duplicates_nothing(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    env = {"SMSGW_BATCH_SIZE": "10", "SMSGW_CONCURRENCY_TRANSACTIONAL": "4", "SMSGW_JOB_LEASE": "2"}
    async with Stack(redis_url, env=env, sandbox={"latency": "0.15"}, worker=False) as stack:
        batch = numbers(1200, 93_000_000)
        ids = [
            (await stack.send({"to": batch[i : i + 300], "text": "Kill test"}))["id"]
            for i in range(0, 1200, 300)
        ]
        first = worker(stack, tmp_path, "first")
        await eventually(lambda: _received_at_least(stack, 300), timeout=20)
        await astop(first, signal.SIGKILL)
        killed_at = time.monotonic()
        received_at_kill = len(await stack.sandbox_counts())
        second = worker(stack, tmp_path, "second")
        try:
            # Calls in flight at the kill still land at the sandbox; beyond them, it is the new worker.
            await eventually(lambda: _received_at_least(stack, received_at_kill + 4 * 10 + 1), timeout=10)
            resumed_after = time.monotonic() - killed_at
            await eventually(lambda: settled(stack, ids, PROGRESSED | {"unknown"}), timeout=60)
            await eventually(lambda: settled(stack, ids, {"delivered", "unknown"}), timeout=20)
        finally:
            await astop(second)
        counts = await stack.sandbox_counts()
        final = await statuses(stack, ids)
        assert sum(final.values()) == 1200
        assert max(counts.values()) == 1, "a number acknowledged by uBill was sent twice"
        unknown = [
            r["number"] for i in ids for r in (await stack.get(i))["recipients"] if r["status"] == "unknown"
        ]
        assert not set(unknown) & set(counts), "an unknown recipient reached uBill but was never settled"
        assert len(unknown) <= 4 * 10, "more unknowns than calls in flight at the kill"
        assert len(counts) + len(unknown) == 1200
        assert resumed_after < 2 + 3, "work was not picked up again within the lease"
        report(
            "sigkill",
            accepted=1200,
            received=len(counts),
            duplicates=0,
            unknown=len(unknown),
            resumed_after_s=round(resumed_after, 2),
        )


async def _received_at_least(stack: Stack, count: int) -> bool:
    return len(await stack.sandbox_counts()) >= count


async def test_redis_killed_and_restarted_loses_nothing(own_redis: EmbeddedRedis, tmp_path: Path) -> None:
    env = {"SMSGW_BATCH_SIZE": "10", "SMSGW_CONCURRENCY_TRANSACTIONAL": "2", "SMSGW_REDIS_TIMEOUT": "0.5"}
    async with Stack(own_redis.url, env=env, sandbox={"latency": "0.1"}, worker=False) as stack:
        batch = numbers(500, 77_000_000)
        ids = [
            (await stack.send({"to": batch[i : i + 100], "text": "Redis test"}))["id"]
            for i in range(0, 500, 100)
        ]
        proc = worker(stack, tmp_path)
        try:
            await eventually(lambda: _received_at_least(stack, 100), timeout=20)
            own_redis.kill()
            started = time.monotonic()
            async with stack.http.post(
                f"{stack.url}/v1/messages", json={"to": "+995591000300", "text": "x"}, headers=stack.auth()
            ) as response:
                assert response.status == 503
                assert response.headers["Content-Type"].startswith("application/problem+json")
            answered_in = time.monotonic() - started
            assert answered_in < 2.0
            await asyncio.sleep(1.0)
            own_redis.start()
            assert proc.poll() is None, "the worker died with Redis"
            await eventually(lambda: settled(stack, ids, PROGRESSED), timeout=60)
        finally:
            await astop(proc)
        counts = await stack.sandbox_counts()
        assert sum((await statuses(stack, ids)).values()) == 500
        assert len(counts) == 500 and max(counts.values()) == 1
        report(
            "redis-restart",
            accepted=500,
            received=len(counts),
            duplicates=0,
            gateway_503_in_s=round(answered_in, 3),
        )


async def test_half_of_uBill_answers_are_5xx(redis: Redis, redis_url: str, tmp_path: Path) -> None:
    env = {"SMSGW_BATCH_SIZE": "10", "SMSGW_MAX_ATTEMPTS": "50", "SMSGW_BREAKER_THRESHOLD": "10000"}
    async with Stack(redis_url, env=env, sandbox={"error_rate": "0.5"}, worker=False) as stack:
        batch = numbers(1000, 95_000_000)
        ids = [
            (await stack.send({"to": batch[i : i + 250], "text": "5xx"}))["id"] for i in range(0, 1000, 250)
        ]
        proc = worker(stack, tmp_path)
        try:
            await eventually(lambda: settled(stack, ids, PROGRESSED), timeout=60)
        finally:
            await astop(proc)
        counts = await stack.sandbox_counts()
        assert len(counts) == 1000 and max(counts.values()) == 1
        report("5xx-50pct", accepted=1000, received=len(counts), duplicates=0)


async def test_stalls_become_unknown_not_resends_and_otp_is_retried(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    env = {"SMSGW_BATCH_SIZE": "10", "SMSGW_UBILL_TIMEOUT": "0.5"}
    async with Stack(redis_url, env=env, sandbox={"stall_rate": "0.3"}, worker=False) as stack:
        batch = numbers(300, 96_000_000)
        tx = (await stack.send({"to": batch, "text": "Stall"}))["id"]
        otps = [
            (await stack.send({"to": f"+99559700{i:04d}", "text": "Code", "priority": "otp"}))["id"]
            for i in range(20)
        ]
        proc = worker(stack, tmp_path)
        try:
            await eventually(lambda: settled(stack, [tx], PROGRESSED | {"unknown"}), timeout=60)
            await eventually(lambda: settled(stack, otps, PROGRESSED), timeout=30)
        finally:
            await astop(proc)
        counts = await stack.sandbox_counts()
        tx_state = await stack.get(tx)
        unknown = {r["number"] for r in tx_state["recipients"] if r["status"] == "unknown"}
        assert max(counts.values()) == 1
        assert not unknown & set(counts), "a stalled call was resent"
        assert len(unknown) + len([n for n in batch if n in counts]) == 300
        report("stalls", accepted=320, unknown_tx=len(unknown), otp_delivered=20, duplicates=0)


async def test_accepted_then_dropped_answers_are_settled_without_resending(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    env = {"SMSGW_BATCH_SIZE": "10"}
    async with Stack(redis_url, env=env, sandbox={"drop_rate": "0.3"}, worker=False) as stack:
        batch = numbers(500, 98_000_000)
        ids = [(await stack.send({"to": batch[i : i + 250], "text": "Drop"}))["id"] for i in (0, 250)]
        proc = worker(stack, tmp_path)
        try:
            await eventually(lambda: settled(stack, ids, {"delivered"}), timeout=60)
        finally:
            await astop(proc)
        counts = await stack.sandbox_counts()
        assert len(counts) == 500 and max(counts.values()) == 1
        report("accept-then-drop", accepted=500, received=len(counts), duplicates=0)


async def test_sigterm_lets_in_flight_calls_finish(redis: Redis, redis_url: str, tmp_path: Path) -> None:
    env = {"SMSGW_BATCH_SIZE": "10", "SMSGW_CONCURRENCY_TRANSACTIONAL": "5", "SMSGW_SHUTDOWN_GRACE": "10"}
    async with Stack(redis_url, env=env, sandbox={"latency": "1.0"}, worker=False) as stack:
        batch = numbers(200, 99_000_000)
        created = await stack.send({"to": batch, "text": "Term"})
        proc = worker(stack, tmp_path)
        await eventually(lambda: _in_flight(stack, created["id"], 50), timeout=10)
        started = time.monotonic()
        code = await astop(proc, signal.SIGTERM, timeout=20)
        drained_in = time.monotonic() - started
        assert code == 0 and drained_in < 10
        after_term = await stack.get(created["id"])
        assert not [r for r in after_term["recipients"] if r["status"] in ("unknown", "dispatching")]
        submitted = sum(1 for r in after_term["recipients"] if r["status"] in PROGRESSED)
        assert submitted >= 50  # the five calls in flight completed
        second = worker(stack, tmp_path, "second")
        try:
            await stack.wait_status(created["id"], *PROGRESSED, timeout=60)
        finally:
            await astop(second)
        counts = await stack.sandbox_counts()
        assert len(counts) == 200 and max(counts.values()) == 1
        report(
            "sigterm",
            accepted=200,
            in_flight_completed=submitted,
            duplicates=0,
            drained_in_s=round(drained_in, 2),
        )


async def _in_flight(stack: Stack, message_id: str, count: int) -> bool:
    """At least ``count`` recipients handed to a uBill call that has not answered yet."""
    recipients: list[dict[str, str]] = (await stack.get(message_id))["recipients"]
    return sum(r["status"] == "dispatching" for r in recipients) >= count
