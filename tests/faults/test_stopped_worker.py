"""A worker stopped (SIGSTOP) mid-call for longer than the job lease, then resumed: a fault no issue listed.

Real processes: a ``redis-server`` of the test's own, the sandbox over HTTP with a slow uBill (its answer
reaches the stopped worker's socket while it is stopped), the gateway on a real socket, and two ``smsgw
worker`` processes: the first takes the unit and is stopped while its call is out; the second, started
then, finds the first provably gone and takes the unit over. The first then resumes and reads uBill's
answer. What counts is what uBill received, what each recipient ends as, and the events.

Expected: a transactional unit is never sent again (the takeover makes it ``unknown``: the call may have
gone); the resumed worker's answer is recorded (uBill did accept the call) without sending anything, and
the callbacks then settle the recipient; an OTP is sent again by the documented ambiguity policy, once,
and the resumed worker's late answer neither sends a third time nor undoes what the second call recorded.
Every status change is one event, and nothing follows the final one.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from pathlib import Path

import orjson
import pytest

from smsgw.devtools.redis import EmbeddedRedis
from smsgw.store import keys
from tests.faults.support import admin, log_text, within, worker
from tests.harness import Stack, astop

FINAL = {"delivered", "failed", "rejected", "expired"}


async def _status(stack: Stack, message_id: str) -> str:
    return str((await stack.get(message_id))["recipients"][0]["status"])


async def _events(fault_redis: EmbeddedRedis, message_id: str) -> list[str]:
    """The statuses published for ``message_id`` in the client's stream, in order."""
    redis = admin(fault_redis)
    try:
        entries = await redis.xrange(keys.client_stream("auth-service"))
    finally:
        await redis.aclose()
    events = [orjson.loads(fields["event"]) for _, fields in entries]
    return [e["status"] for e in events if e["message_id"] == message_id]


@pytest.mark.parametrize("lane", ["transactional", "otp"])
async def test_a_worker_stopped_mid_call_past_the_lease_then_resumed(
    lane: str, fault_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    number = "995591200001" if lane == "otp" else "995591200002"
    env = {"SMSGW_JOB_LEASE": "1", "SMSGW_REDIS_TIMEOUT": "0.5", "SMSGW_UBILL_TIMEOUT": "15"}
    async with Stack(fault_redis.url, env=env, sandbox={"latency": "3"}, worker=False) as stack:
        first, first_log = worker(stack, tmp_path, "first")
        second = None
        try:
            created = await stack.send({"to": number, "text": "Your code is 4821", "priority": lane})
            await stack.wait_status(created["id"], "dispatching", timeout=20)
            await asyncio.sleep(0.5)  # the request is at uBill, which answers in 3 s
            os.kill(first.pid, signal.SIGSTOP)
            second, second_log = worker(stack, tmp_path, "second")
            # The second worker must see the first miss its beats for a whole lease while Redis serves it.
            # Transactional: the unit becomes unknown (the call may have gone). OTP: the policy resends it.
            if lane == "transactional":
                took_over = await within(lambda: _is(stack, created["id"], "unknown"), timeout=30)
            else:
                took_over = await within(lambda: _calls(stack, number, 2), timeout=30)
            assert took_over, f"the second worker did not take the unit over ({await stack.sandbox_counts()})"
            await asyncio.sleep(3.5)  # uBill's answer to the first call is now waiting at the stopped worker
            os.kill(first.pid, signal.SIGCONT)
            delivered = await within(lambda: _is(stack, created["id"], "delivered"), timeout=30)
            await asyncio.sleep(4)  # a further call (3 s at the sandbox) would be recorded by now
            final = await _status(stack, created["id"])
            calls = (await stack.sandbox_counts()).get(number, 0)
            events = await _events(fault_redis, created["id"])
        finally:
            os.kill(first.pid, signal.SIGCONT)
            await astop(first)
            if second is not None:
                await astop(second)
    assert calls == (1 if lane == "transactional" else 2), f"uBill got the {lane} message {calls} times"
    assert delivered and final == "delivered", final
    # Each event is a change (an OTP's retry goes dispatching -> queued -> dispatching), and nothing follows
    # the final one.
    repeated = [a for a, b in itertools.pairwise(events) if a == b]
    assert not repeated and events[-1] == "delivered", f"one status change, one event: {events}"
    assert events.count("delivered") == 1, events
    for log in (first_log, second_log):
        assert "Traceback" not in log_text(log), log_text(log)[-3000:]


async def _calls(stack: Stack, number: str, n: int) -> bool:
    return (await stack.sandbox_counts()).get(number, 0) >= n


async def _is(stack: Stack, message_id: str, status: str) -> bool:
    return await _status(stack, message_id) == status
