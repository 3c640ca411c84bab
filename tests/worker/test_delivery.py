"""Retries, refusals, the breaker, dead letters, ambiguous outcomes, orphan callbacks and reconciliation."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from redis.asyncio import Redis

from smsgw.ubill import format_local
from tests.harness import CALLBACK_KEY, Stack, eventually
from tests.worker.test_lanes import numbers

SUBMITTED_OR_LATER = ("submitted", "sent", "pending", "delivered")


async def worker_metric(stack: Stack, name: str) -> float:
    assert stack.worker is not None
    total = 0.0
    for family in stack.worker.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


async def test_server_errors_are_retried_without_duplicates(redis: Redis, redis_url: str) -> None:
    env = {"SMSGW_BATCH_SIZE": "5", "SMSGW_MAX_ATTEMPTS": "30", "SMSGW_BREAKER_THRESHOLD": "1000"}
    async with Stack(redis_url, env=env, sandbox={"error_rate": "0.5"}) as stack:
        created = await stack.send({"to": numbers(50), "text": "Retry me"})
        await stack.wait_status(created["id"], "delivered", timeout=20)
        counts = await stack.sandbox_counts()
        assert len(counts) == 50 and set(counts.values()) == {1}
        assert await worker_metric(stack, "smsgw_dispatch_retries_total") > 0


async def test_refusal_is_final_and_not_retried(redis: Redis, redis_url: str) -> None:
    async with Stack(redis_url, sandbox={"brands": "1:SMSGW"}) as stack:  # brand 2 unknown at uBill
        created = await stack.send({"to": "+995591000200", "text": "Hi", "brand_id": 2})
        done = await stack.wait_status(created["id"], "rejected")
        assert "brand" in done["recipients"][0]["error"].lower()
        await asyncio.sleep(0.3)
        assert await worker_metric(stack, "smsgw_dispatch_retries_total") == 0


async def test_breaker_opens_during_an_outage_and_resumes_by_itself(redis: Redis, redis_url: str) -> None:
    env = {
        "SMSGW_BREAKER_THRESHOLD": "3",
        "SMSGW_BREAKER_COOLDOWN": "1",
        "SMSGW_MAX_ATTEMPTS": "100",
        "SMSGW_BATCH_SIZE": "1",
        "SMSGW_RETRY_CAP": "0.2",
    }
    async with Stack(redis_url, env=env, sandbox={"error_rate": "1"}) as stack:
        created = await stack.send({"to": numbers(5), "text": "Outage"})
        assert stack.worker is not None
        await eventually(lambda: _breaker(stack, 2), timeout=5)
        calls_when_open = await _calls(stack)
        await asyncio.sleep(0.6)  # within the cooldown: no call goes out
        assert await _calls(stack) == calls_when_open
        await stack.sandbox_patch({"error_rate": 0})
        await stack.wait_status(created["id"], *SUBMITTED_OR_LATER, timeout=10)
        assert stack.worker.dispatcher.breaker.state == 0
        assert set((await stack.sandbox_counts()).values()) == {1}


async def _breaker(stack: Stack, state: int) -> bool:
    return stack.worker is not None and stack.worker.dispatcher.breaker.state == state


async def _calls(stack: Stack) -> int:
    return int(await worker_metric(stack, "smsgw_ubill_requests_total"))


async def test_exhausted_retries_end_in_a_dead_letter(redis: Redis, redis_url: str) -> None:
    env = {"SMSGW_MAX_ATTEMPTS": "3", "SMSGW_BREAKER_THRESHOLD": "1000"}
    async with Stack(redis_url, env=env, sandbox={"error_rate": "1"}) as stack:
        created = await stack.send({"to": "+995591000201", "text": "Doomed"})
        done = await stack.wait_status(created["id"], "failed")
        assert "retries exhausted" in done["recipients"][0]["error"]
        assert await redis.zrange("smsgw:dead", 0, -1) == [f"{created['id']}:0"]
        assert await worker_metric(stack, "smsgw_ubill_requests_total") == 3


async def test_cut_answer_is_unknown_then_settled_by_callbacks(redis: Redis, redis_url: str) -> None:
    """uBill accepted but the answer was cut: no resend (transactional); the callback settles it."""
    async with Stack(redis_url, sandbox={"drop_rate": "1"}) as stack:
        created = await stack.send({"to": ["+995591000202", "+995591000203"], "text": "Ambiguous"})
        done = await stack.wait_status(created["id"], "delivered", timeout=10)
        assert all(r["provider_sms_id"] for r in done["recipients"])
        assert set((await stack.sandbox_counts()).values()) == {1}
        assert await worker_metric(stack, "smsgw_dispatch_recipients_total") >= 2


async def test_stalled_call_is_unknown_and_never_resent(redis: Redis, redis_url: str) -> None:
    async with Stack(redis_url, env={"SMSGW_UBILL_TIMEOUT": "0.3"}, sandbox={"stall_rate": "1"}) as stack:
        created = await stack.send({"to": "+995591000204", "text": "Stalled"})
        done = await stack.wait_status(created["id"], "unknown", timeout=5)
        assert "outcome unknown" in done["recipients"][0]["error"]
        await asyncio.sleep(1.0)
        assert await worker_metric(stack, "smsgw_ubill_requests_total") == 1


async def test_otp_with_unknown_outcome_is_retried_within_validity(redis: Redis, redis_url: str) -> None:
    """Policy: a duplicate code beats a missing one; after the first cut answer the retry gets through."""
    async with Stack(redis_url, env={"SMSGW_UBILL_TIMEOUT": "0.3"}, sandbox={"stall_rate": "1"}) as stack:
        created = await stack.send({"to": "+995591000205", "text": "Code 9", "priority": "otp"})
        await eventually(lambda: _calls_at_least(stack, 1), timeout=5)
        await stack.sandbox_patch({"stall_rate": 0})
        await stack.wait_status(created["id"], *SUBMITTED_OR_LATER, timeout=5)
        assert await worker_metric(stack, "smsgw_ubill_requests_total") >= 2


async def _calls_at_least(stack: Stack, count: int) -> bool:
    return await worker_metric(stack, "smsgw_ubill_requests_total") >= count


async def test_callback_before_the_smsid_is_recorded_is_kept_and_applied(
    redis: Redis, redis_url: str
) -> None:
    """The sandbox numbers its sends from 100000: announce that smsID's delivery before the send exists."""
    async with Stack(redis_url) as stack:
        await stack.sandbox_patch({"callback_url": None})  # only our hand-made callback arrives
        params = {
            "key": CALLBACK_KEY,
            "smsID": "100000",
            "number": "995591000206",
            "statusID": "1",
            "date": format_local(datetime.now(UTC)),
        }
        async with stack.http.get(f"{stack.url}/callbacks/ubill", params=params) as r:
            assert r.status == 200 and await r.text() == "OK"
        assert await redis.zscore("smsgw:orphans", "100000") is not None
        created = await stack.send({"to": "+995591000206", "text": "Late bird"})
        done = await stack.wait_status(created["id"], "delivered", timeout=5)
        assert done["recipients"][0]["provider_sms_id"] == "100000"
        assert not await redis.exists("smsgw:orphan:100000")


async def test_reconciliation_settles_recipients_whose_callbacks_never_came(
    redis: Redis, redis_url: str
) -> None:
    env = {"SMSGW_RECONCILE_AFTER": "1"}
    async with Stack(redis_url, env=env, sandbox={"lost_rate": "1"}) as stack:
        created = await stack.send({"to": numbers(3), "text": "Quiet"})
        await stack.wait_status(created["id"], "submitted")
        done = await stack.wait_status(created["id"], "delivered", timeout=10)
        assert done["status"] == "delivered"
        assert await worker_metric(stack, "smsgw_ubill_requests_total") >= 2  # send + report


async def test_duplicate_and_reordered_callbacks_are_harmless(redis: Redis, redis_url: str) -> None:
    knobs = {"duplicate_rate": "1", "reorder_rate": "1"}
    async with Stack(redis_url, sandbox=knobs) as stack:
        created = await stack.send({"to": numbers(4), "text": "Noisy"})
        done = await stack.wait_status(created["id"], "delivered", timeout=10)
        await asyncio.sleep(0.5)  # the late 'sent' callbacks have arrived by now
        done = await stack.get(created["id"])
        assert Counter(r["status"] for r in done["recipients"]) == {"delivered": 4}
        events = await redis.xrange("smsgw:stream:auth-service")
        delivered = [e for _, e in events if '"delivered"' in e["event"]]
        assert len(delivered) == 4  # one event per change, none for duplicates
