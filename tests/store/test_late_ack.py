"""A dead letter whose earlier attempt turns out accepted is no dead letter any more.

Found with the stateful tests' invariant [5] (every ``smsgw:dead`` entry is a dead unit): a worker paused with
uBill's acceptance in hand, another took the unit over, the OTP policy retried it to exhaustion (dead letter),
and the first worker's late acknowledgement was recorded (the truth) while the dead-letter entry stayed: the
admin list showed it until retention, and its replay answered 409 "not a dead letter".
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from smsgw.clock import now_ms
from smsgw.store import keys
from smsgw.store.dispatch import Capacity, Dispatch, Orphaned, Outcome, Send
from smsgw.store.messages import Accepted, Messages
from smsgw.store.records import NewMessage
from smsgw.store.scripts import Scripts

NUMBER = "995591000008"


def _worker(redis: Redis, scripts: Scripts, owner: str) -> Dispatch:
    return Dispatch(redis, redis, scripts, owner=owner, lease=1.0, capacity=Capacity(0, 0, {}))


async def test_a_late_acceptance_takes_the_unit_off_the_dead_letters(redis: Redis) -> None:
    scripts = Scripts.load(redis)
    messages = Messages(redis, scripts, timeout=5.0)
    now = now_ms()
    message = NewMessage(
        id="m-late", client="alpha", lane="otp", brand_id=1, text="code 1", sealed=False, reference=None,
        segments=1, encoding="GSM-7", created_ms=now, send_at_ms=None, expires_ms=now + 300_000,
        stop_list=False, units=((NUMBER,),),
    )  # fmt: skip
    assert isinstance(await messages.accept(message, ttl_s=3_600), Accepted)
    first, second = _worker(redis, scripts, "w1"), _worker(redis, scripts, "w2")
    await second.beat({})
    (send,) = (await first.take("otp", 1, 10)).jobs
    assert isinstance(send, Send)
    # uBill accepts first's call as 1001; before first records it, it is gone (signed off) and second, served
    # continuously for longer than the grace, takes the attempt over once the lease has passed.
    await first.sign_off()
    deadline = time.monotonic() + 15
    while True:
        await second.beat({})
        jobs = (await second.take("otp", 1, 10)).jobs
        if jobs:
            break
        assert time.monotonic() < deadline, "the unit was never taken over"
        await asyncio.sleep(0.2)
    (orphaned,) = jobs
    assert isinstance(orphaned, Orphaned)
    # The OTP policy retries an unknown outcome; with no attempt left it is a dead letter.
    assert (await second.settle(orphaned, Outcome.DEAD, reason="retries exhausted")).state == "ok"
    assert await redis.zscore(keys.DEAD, send.unit_id) is not None

    late = await first.settle(send, Outcome.ACKED, sms_id="1001", reconcile_after=60)

    assert late.state == "stale"
    view = await messages.view("m-late")
    assert view is not None
    assert (view.units[0].state, view.units[0].sms_id) == ("acked", "1001")  # the acceptance is the truth
    assert await redis.zscore(keys.DEAD, send.unit_id) is None  # so it is no dead letter any more
