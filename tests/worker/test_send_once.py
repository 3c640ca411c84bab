"""Send-once towards uBill: a unit that comes back after uBill acknowledged it never calls again."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from smsgw.store import keys
from tests.harness import Stack, eventually, stored


async def test_a_timer_brought_back_after_acknowledgement_does_not_send_again(
    redis: Redis, redis_url: str
) -> None:
    async with Stack(redis_url) as stack:
        created = await stack.send({"to": "+995591000400", "text": "Once"})
        await stack.wait_status(created["id"], "delivered")
        unit = f"{created['id']}:0"
        assert await redis.zscore(keys.lane_queue("transactional"), unit) is None  # finished: no timer
        # The unit's timer again, as a restored backup, a replayed AOF or a stray ZADD would bring it back.
        await redis.zadd(keys.lane_queue("transactional"), {unit: 1})
        await redis.lpush(keys.wake("transactional"), "1")
        await eventually(lambda: _gone(redis, unit), timeout=5)
        await asyncio.sleep(0.2)
        assert await stack.sandbox_counts() == {"995591000400": 1}


async def _gone(redis: Redis, unit: str) -> bool:
    return await redis.zscore(keys.lane_queue("transactional"), unit) is None


async def test_lanes_hold_unit_ids_and_records_are_text_never_pickle(redis: Redis, redis_url: str) -> None:
    async with Stack(redis_url, worker=False) as stack:
        created = await stack.send({"to": ["+995591000401", "+995591000402"], "text": "Json"})
        assert await redis.zrange(keys.lane_queue("transactional"), 0, -1) == [f"{created['id']}:0"]
        binary = Redis.from_url(stack.redis_url)
        raw = await binary.hgetall(keys.message(created["id"]))
        await binary.aclose()
        for value in raw.values():
            value.decode("utf-8")  # text: every value decodes
            assert not value.startswith(b"\x80")  # and none is a pickle (protocol 2+ starts with 0x80)
        view = await stored(redis, created["id"])
        assert view.unit_numbers == (("995591000401", "995591000402"),)


async def test_a_crashed_attempt_found_mid_call_is_not_blindly_resent(redis: Redis, redis_url: str) -> None:
    """A unit left 'calling' by a worker that is gone: transactional becomes unknown, never a second call."""
    async with Stack(redis_url, worker=False) as stack:
        created = await stack.send({"to": "+995591000403", "text": "Crash"})
        message = keys.message(created["id"])
        # What a worker SIGKILLed mid-call leaves behind (its liveness record is gone with it).
        await redis.hset(message, "u:0", "calling|dead-worker:1|||0|0|")
        await redis.hset(message, "r:995591000403", "dispatching|0|||")
        await stack.start_worker()
        done = await stack.wait_status(created["id"], "unknown", timeout=10)
        assert "died mid-call" in done["recipients"][0]["error"]
        assert await stack.sandbox_counts() == {}


async def test_an_acceptance_redis_lost_is_recorded_again_not_resent(redis: Redis, redis_url: str) -> None:
    """A failover can lose a worker's acknowledgement record (asynchronous replication): the unit comes back
    claimed by this worker, or even new. The worker remembers what uBill accepted and records it again."""
    async with Stack(redis_url) as stack:
        assert stack.worker is not None
        for state in ("calling", "new"):
            number = "+995591000404" if state == "calling" else "+995591000405"
            created = await stack.send({"to": number, "text": "Lost ack"})
            done = await stack.wait_status(created["id"], "delivered")
            sms_id = done["recipients"][0]["provider_sms_id"]
            message = keys.message(created["id"])
            digits = number.lstrip("+")
            if state == "calling":  # the claim survived, the acknowledgement did not
                await redis.hset(message, "u:0", f"calling|{stack.worker.owner}||0|1|0|")
                await redis.hset(message, f"r:{digits}", "dispatching|0|||")
            else:  # neither did
                await redis.hset(message, "u:0", "new||||1|0|")
                await redis.hset(message, f"r:{digits}", "queued|0|||")
            await redis.zadd(keys.lane_queue("transactional"), {f"{created['id']}:0": 1})
            await redis.lpush(keys.wake("transactional"), "1")
            again = await stack.wait_status(created["id"], "submitted")
            assert again["recipients"][0]["provider_sms_id"] == sms_id
            await asyncio.sleep(0.2)
            assert (await stack.sandbox_counts())[digits] == 1, state
