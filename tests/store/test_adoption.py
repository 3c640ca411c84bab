"""Adoption of a lost answer needs evidence: a kept callback of that smsID for the unit's numbers.

Found by the stateful tests (``test_stateful.py``, invariant [5]): ``smsgw:orphan-number:{n}`` is renewed by
every new orphan callback for the number, while its members left only when their callbacks were applied. An
smsID whose kept callbacks had expired stayed a member as long as callbacks kept coming for that number
(growing with history), and a lost answer to that number then adopted it with no callback at all.
"""

from __future__ import annotations

from redis.asyncio import Redis

from smsgw.clock import now_ms
from smsgw.store import keys
from smsgw.store.delivery import Deliveries
from smsgw.store.dispatch import Capacity, Dispatch, Outcome, Send
from smsgw.store.messages import Accepted, Messages
from smsgw.store.records import NewMessage
from smsgw.store.scripts import Scripts

NUMBER = "995591000009"


def _message(message_id: str) -> NewMessage:
    now = now_ms()
    return NewMessage(
        id=message_id,
        client="alpha",
        lane="transactional",
        brand_id=1,
        text="hello",
        sealed=False,
        reference=None,
        segments=1,
        encoding="GSM-7",
        created_ms=now,
        send_at_ms=None,
        expires_ms=now + 86_400_000,
        stop_list=False,
        units=((NUMBER,),),
    )


async def test_a_lost_answer_never_adopts_an_sms_id_whose_callbacks_expired(redis: Redis) -> None:
    scripts = Scripts.load(redis)
    messages = Messages(redis, scripts, timeout=5.0)
    deliveries = Deliveries(redis, scripts, orphan_ttl=600, reconcile_after=60.0)
    worker = Dispatch(redis, redis, scripts, owner="w1", lease=30.0, capacity=Capacity(0, 0, {}))
    await worker.beat({})
    for message_id in ("m-a", "m-b"):
        assert isinstance(await messages.accept(_message(message_id), ttl_s=3_600), Accepted)

    # Another integration's SMS to the number: its callback is kept (we never sent 90001).
    assert (await deliveries.apply("90001", NUMBER, 1, now_ms())).outcome == "orphaned"
    jobs = (await worker.take("transactional", 2, 10)).jobs
    a, b = (job for job in jobs if isinstance(job, Send))
    # b's call is accepted as 1002; uBill's callback beats the worker's record of it, then the ack applies it.
    assert (await deliveries.apply("1002", NUMBER, 0, now_ms())).outcome == "orphaned"
    assert (await worker.settle(b, Outcome.ACKED, sms_id="1002", reconcile_after=60)).state == "ok"
    # The orphan TTL passes for 90001's kept callback (Redis expires the list); the number's set was renewed
    # by 1002's callback and outlives it.
    await redis.delete(keys.orphan("90001"))

    # a's answer is lost: with no kept callback for its number, nothing may be adopted.
    await worker.settle(a, Outcome.UNKNOWN, reason="outcome unknown: timeout")
    view = await messages.view("m-a")
    assert view is not None
    recipient = view.recipient(NUMBER)
    assert recipient is not None
    assert (recipient.status, recipient.sms_id) == ("unknown", "")
    assert await redis.smembers(keys.orphan_number(NUMBER)) == set()  # nothing kept for it any more


async def test_the_numbers_index_of_kept_callbacks_holds_only_live_ones(redis: Redis) -> None:
    scripts = Scripts.load(redis)
    deliveries = Deliveries(redis, scripts, orphan_ttl=600, reconcile_after=60.0)
    for sms_id in ("90001", "90002", "90003"):
        assert (await deliveries.apply(sms_id, NUMBER, 1, now_ms())).outcome == "orphaned"
        await redis.delete(keys.orphan(sms_id))  # its kept callback expires before the next one comes
    assert await redis.smembers(keys.orphan_number(NUMBER)) == {"90003"}
