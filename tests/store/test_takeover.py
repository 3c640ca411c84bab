"""A taken-over attempt stays the gone owner's attempt until it is settled, whoever loses track of it.

Found by the long stateful run (``HYPOTHESIS_PROFILE=long``): a bulk unit's call reached uBill, its worker
crashed before recording the answer, a second worker took the attempt over, and that take's answer was lost.
When the unit's lease brought it back, the take handed it to the second worker as its own plain claim
(``Mine``), which the dispatcher reads as "this process never sent it" and defers: the unit went back to the
lane and uBill got the numbers a second time. A take now hands such a unit back as ``Orphaned`` again, with
the gone owner, so the ambiguity policy decides (``unknown``, or a documented OTP retry).
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from smsgw.clock import now_ms
from smsgw.command import SendCommand
from smsgw.store import keys
from smsgw.store.dispatch import Capacity, Dispatch, Mine, Orphaned, Send
from smsgw.store.messages import Accepted, Messages
from smsgw.store.scripts import Scripts

LEASE_S = 0.3
NO_CAPACITY = Capacity(calls=0, numbers=0, shares={})


def _worker(redis: Redis, scripts: Scripts, owner: str) -> Dispatch:
    return Dispatch(redis, redis, scripts, owner=owner, lease=LEASE_S, capacity=NO_CAPACITY)


async def _alive_for(worker: Dispatch, seconds: float) -> None:
    """Beat well within the grace for ``seconds`` (a gap longer than the grace restarts liveness)."""
    for _ in range(int(seconds / 0.05) + 1):
        await worker.beat({})
        await asyncio.sleep(0.05)


async def test_a_lost_takeover_comes_back_orphaned_not_as_a_plain_claim(redis: Redis) -> None:
    scripts = Scripts.load(redis)
    command = SendCommand(numbers=("995591400001",), text="hello", brand_id=1, lane="bulk")
    message = command.message("shop", now_ms=now_ms(), batch_size=100)
    assert isinstance(await Messages(redis, scripts, timeout=1.0).accept(message, ttl_s=600), Accepted)
    first, second = _worker(redis, scripts, "first"), _worker(redis, scripts, "second")
    await first.beat({})
    claimed = (await first.take("bulk", 1, 100)).jobs
    assert len(claimed) == 1 and isinstance(claimed[0], Send)  # its call goes to uBill...
    await first.sign_off()  # ...and the worker is gone before it records the answer
    await _alive_for(second, LEASE_S + 0.1)  # served without a gap for longer than the grace
    taken = (await second.take("bulk", 1, 100)).jobs
    assert len(taken) == 1 and isinstance(taken[0], Orphaned) and taken[0].previous_owner == "first"
    # The answer to that take is lost: the second worker does not know it holds the attempt.
    await _alive_for(second, LEASE_S + 0.1)  # the unit's lease runs out
    again = (await second.take("bulk", 1, 100)).jobs
    assert len(again) == 1 and not isinstance(again[0], Mine), again
    assert isinstance(again[0], Orphaned) and again[0].previous_owner == "first", again
    unit = await redis.hget(keys.message(message.id), "u:0")
    assert unit is not None and unit.startswith("calling|second|"), unit
