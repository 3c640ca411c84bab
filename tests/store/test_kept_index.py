"""The smsID index says "kept" while callbacks wait for an smsID, so recording it (``SET ... GET``) learns in
one command whether kept callbacks are to be applied. Callbacks kept by a version that did not write that
entry (an upgrade) get it from the first housekeeping round of each worker (``Upkeep.mark_kept``)."""

from __future__ import annotations

from redis.asyncio import Redis

from smsgw.clock import now_ms
from smsgw.store import keys
from smsgw.store.delivery import Deliveries
from smsgw.store.dispatch import Capacity, Dispatch, Outcome, Send
from smsgw.store.messages import Accepted, Messages
from smsgw.store.records import NewMessage
from smsgw.store.scripts import Scripts
from smsgw.store.upkeep import Upkeep

NUMBER = "995591000031"


async def _claimed(redis: Redis, scripts: Scripts) -> tuple[Dispatch, Send]:
    messages = Messages(redis, scripts, timeout=5.0)
    now = now_ms()
    message = NewMessage(
        id="m-kept", client="alpha", lane="transactional", brand_id=1, text="Receipt", sealed=False,
        reference=None, segments=1, encoding="GSM-7", created_ms=now, send_at_ms=None,
        expires_ms=now + 300_000, stop_list=False, units=((NUMBER,),),
    )  # fmt: skip
    assert isinstance(await messages.accept(message, ttl_s=3_600), Accepted)
    worker = Dispatch(redis, redis, scripts, owner="w1", lease=5.0, capacity=Capacity(0, 0, {}))
    (send,) = (await worker.take("transactional", 1, 10)).jobs
    assert isinstance(send, Send)
    return worker, send


async def _status(redis: Redis) -> str:
    return str(await redis.hget(keys.message("m-kept"), f"r:{NUMBER}")).split("|")[0]


async def test_a_callback_that_came_first_is_applied_when_its_smsid_is_recorded(redis: Redis) -> None:
    scripts = Scripts.load(redis)
    worker, send = await _claimed(redis, scripts)
    deliveries = Deliveries(redis, scripts, orphan_ttl=3_600, reconcile_after=600)
    assert (await deliveries.apply("5001", NUMBER, 1, now_ms())).outcome == "orphaned"
    assert await redis.get(keys.sms("5001")) == keys.SMS_KEPT
    await worker.settle(send, Outcome.ACKED, sms_id="5001", reconcile_after=600)
    assert await _status(redis) == "delivered"
    assert await redis.get(keys.sms("5001")) == keys.unit_id("m-kept", 0)
    assert not await redis.exists(keys.orphan("5001"))


async def test_callbacks_kept_before_the_upgrade_are_marked_once_and_applied(redis: Redis) -> None:
    scripts = Scripts.load(redis)
    worker, send = await _claimed(redis, scripts)
    deliveries = Deliveries(redis, scripts, orphan_ttl=3_600, reconcile_after=600)
    for sms in ("5002", "5003", "5004"):
        assert (await deliveries.apply(sms, NUMBER, 1, now_ms())).outcome == "orphaned"
    # What the earlier version left: kept callbacks, no "kept" index entry; one smsID recorded since; one
    # whose kept callbacks have expired by the index's score.
    await redis.delete(keys.sms("5002"), keys.sms("5004"))
    await redis.set(keys.sms("5003"), "m-other:0", ex=600)
    await redis.zadd(keys.ORPHANS, {"5004": now_ms() - 1})
    marked = await Upkeep(redis, scripts).mark_kept(now_ms(), chunk=2)
    assert marked == 1
    assert await redis.get(keys.sms("5002")) == keys.SMS_KEPT
    assert 0 < await redis.pttl(keys.sms("5002")) <= 3_600_000
    assert await redis.get(keys.sms("5003")) == "m-other:0"  # a recorded entry is never overwritten
    assert not await redis.exists(keys.sms("5004"))
    await worker.settle(send, Outcome.ACKED, sms_id="5002", reconcile_after=600)
    assert await _status(redis) == "delivered"
