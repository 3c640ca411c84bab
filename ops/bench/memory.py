"""Figure 5 — Redis memory per queued recipient: ``INFO memory`` used_memory delta over the recipients.

Ten 10,000-recipient bulk messages are accepted with no worker running, so everything they need while queued
(message hash, arq job records, lane queue entries) is in Redis. Baseline: the same numbers as bare members of
one sorted set. Target: <= 1 KiB per recipient.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ops.bench.harness import Bench
from ops.bench.report import Row
from smsgw.store import keys

__all__ = ["run"]

MESSAGE = 10_000
TARGET_BYTES = 1024
TEXT = "Bench memory: your subscription renews tomorrow"


async def _used_memory(bench: Bench) -> int:
    await asyncio.sleep(0.3)
    info = await bench.redis.info("memory")
    return int(info["used_memory"])


async def run(bench: Bench) -> tuple[list[Row], dict[str, Any]]:
    messages = 2 if bench.quick else 10
    batches = [bench.numbers.take(MESSAGE) for _ in range(messages)]
    recipients = messages * MESSAGE
    await bench.reset()
    await bench.start_gateway()
    try:
        before = await _used_memory(bench)
        posted = await bench.post_many(
            [{"to": b, "text": TEXT, "priority": "bulk"} for b in batches], concurrency=1
        )
        after = await _used_memory(bench)
        first_id = str(json.loads(posted[0].body)["id"])
        breakdown = {
            "message_hash_bytes": await bench.redis.memory_usage(keys.message(first_id), samples=0),
            "bulk_lane_zset_bytes": await bench.redis.memory_usage(keys.lane_queue("bulk"), samples=0),
            "keys": await bench.redis.dbsize(),
        }
    finally:
        bench.stop("gateway")
    gateway = (after - before) / recipients

    await bench.flush()
    before = await _used_memory(bench)
    for batch in batches:
        await bench.redis.zadd("bench:baseline:numbers", {n: i for i, n in enumerate(batch)})
    after_zset = await _used_memory(bench)
    baseline = (after_zset - before) / recipients
    await bench.flush()
    rows = [
        Row(
            f"Redis memory per queued recipient ({recipients:,} queued)",
            round(gateway, 1),
            "B",
            round(baseline, 1),
            "bare sorted-set members",
            f"<= {TARGET_BYTES} B",
            gateway <= TARGET_BYTES,
            round(gateway / baseline, 2) if baseline else None,
        )
    ]
    details = {
        "messages": messages,
        "recipients_per_message": MESSAGE,
        "gateway_bytes_per_recipient": round(gateway, 1),
        "baseline_bytes_per_recipient": round(baseline, 1),
        **breakdown,
    }
    return rows, details
