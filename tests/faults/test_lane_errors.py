"""Error replies nobody listed as an outage: a lane logs them, backs off and goes on; a known answer is held.

Real processes: a ``redis-server`` of the test's own, the sandbox, the gateway and ``smsgw worker`` as a real
process. The fault is one an operator can make: an ACL change that denies the worker's ``BLPOP`` (the lanes'
wait for work), answered ``-NOPERM``, then undone. Before, the lane task ended on the first such reply and
the worker went on beating and answering ``/healthz`` while it never dispatched that lane again (Redis's
``-UNBLOCKED`` after a failover did the same; it is an outage now). And an ACL that denies scripts while an
OTP's call is out: the worker holds uBill's answer until Redis records it, as it does through an outage.
Before, the job failed (``dispatch.failed``, an error an operator is paged for) and the answer survived only
in the process's memory of accepted calls until the lease brought the unit back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from smsgw.devtools.redis import EmbeddedRedis
from tests.faults.support import admin, log_text, within, worker
from tests.harness import Stack, astop


async def test_a_lane_goes_on_after_an_error_reply_it_did_not_expect(
    fault_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    redis = admin(fault_redis)
    async with Stack(fault_redis.url, worker=False) as stack:
        proc, log = worker(stack, tmp_path)
        try:
            first = await stack.send({"to": "995591300001", "text": "before"})
            await stack.wait_status(first["id"], "delivered", timeout=20)
            await redis.execute_command("ACL", "SETUSER", "default", "-blpop")
            await asyncio.sleep(1.5)  # every idle lane has met -NOPERM by now (a lane waits at most 1 s)
            during = await stack.send({"to": "995591300002", "text": "during"})
            await redis.execute_command("ACL", "SETUSER", "default", "+blpop")
            after = await stack.send({"to": "995591300003", "text": "after"})
            delivered = [
                await within(lambda m=m: _delivered(stack, m["id"]), timeout=20) for m in (during, after)
            ]
        finally:
            await redis.execute_command("ACL", "SETUSER", "default", "+blpop")
            await redis.aclose()
            await astop(proc)
    assert delivered == [True, True], f"a lane stopped after an error reply: {delivered}"
    text = log_text(log)
    assert "NoPermissionError" in text and "lane.failed" in text, "the fault was not met"


async def _delivered(stack: Stack, message_id: str) -> bool:
    return str((await stack.get(message_id))["recipients"][0]["status"]) == "delivered"


async def test_an_answer_met_by_an_error_reply_is_held_not_dropped(
    fault_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    number = "995591300004"
    redis = admin(fault_redis)
    env = {"SMSGW_UBILL_TIMEOUT": "15"}  # uBill's 2 s answer is an answer, not a timeout
    async with Stack(fault_redis.url, env=env, worker=False, sandbox={"latency": "2"}) as stack:
        proc, log = worker(stack, tmp_path)
        try:
            created = await stack.send({"to": number, "text": "Your code is 4821", "priority": "otp"})
            await stack.wait_status(created["id"], "dispatching", timeout=20)
            await redis.execute_command("ACL", "SETUSER", "default", "-evalsha")
            await asyncio.sleep(3.5)  # uBill answered meanwhile; the settle met -NOPERM
            await redis.execute_command("ACL", "SETUSER", "default", "+evalsha")
            delivered = await within(lambda: _delivered(stack, created["id"]), timeout=20)
            await asyncio.sleep(3)  # a second call (2 s at the sandbox) would be recorded by now
            calls = (await stack.sandbox_counts()).get(number, 0)
        finally:
            await redis.execute_command("ACL", "SETUSER", "default", "+evalsha")
            await redis.aclose()
            await astop(proc)
    assert calls == 1, f"the OTP reached uBill {calls} times: the worker dropped uBill's answer"
    assert delivered
    text = log_text(log)
    assert "settle_failed_holding_answer" in text and "dispatch.failed" not in text, text[-3000:]
