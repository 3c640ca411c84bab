"""Send-once towards uBill: a job that runs again after uBill acknowledged it never calls again."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from smsgw import keys
from tests.harness import Stack, eventually


async def test_duplicate_enqueue_after_acknowledgement_does_not_send_again(
    redis: Redis, redis_url: str
) -> None:
    async with Stack(redis_url) as stack:
        created = await stack.send({"to": "+995591000400", "text": "Once"})
        await stack.wait_status(created["id"], "delivered")
        job_id = f"{created['id']}:0"
        # The same job again, as a duplicate enqueue, an arq re-run or a replayed backup would bring it back.
        record = {"t": 1, "f": "dispatch", "a": [created["id"], 0, 1], "k": {}, "et": 0}
        await redis.set(keys.job(job_id), json.dumps(record))
        await redis.zadd(keys.lane_queue("transactional"), {job_id: 1})  # arq reads score 0 as absent
        await redis.lpush(keys.wake("transactional"), "1")
        await eventually(lambda: _gone(redis, job_id), timeout=5)
        await asyncio.sleep(0.2)
        assert await stack.sandbox_counts() == {"995591000400": 1}


async def _gone(redis: Redis, job_id: str) -> bool:
    return await redis.zscore(keys.lane_queue("transactional"), job_id) is None


async def test_job_records_are_json_never_pickle(redis: Redis, redis_url: str) -> None:
    async with Stack(redis_url, worker=False) as stack:
        created = await stack.send({"to": ["+995591000401", "+995591000402"], "text": "Json"})
        raw = await redis.get(keys.job(f"{created['id']}:0"))
        assert raw is not None
        record = json.loads(raw)
        assert record["f"] == "dispatch" and record["a"] == [created["id"], 0, 2]


async def test_a_crashed_attempt_found_mid_call_is_not_blindly_resent(redis: Redis, redis_url: str) -> None:
    """A unit left 'calling' by a dead worker: transactional becomes unknown, never a second call."""
    async with Stack(redis_url, worker=False) as stack:
        created = await stack.send({"to": "+995591000403", "text": "Crash"})
        message = keys.message(created["id"])
        await redis.hset(message, "u:0", "calling|dead-worker:1|||0|")
        await redis.hset(message, "r:995591000403", "dispatching|0||||")
        await stack.start_worker()
        done = await stack.wait_status(created["id"], "unknown")
        assert "died mid-call" in done["recipients"][0]["error"]
        assert await stack.sandbox_counts() == {}
