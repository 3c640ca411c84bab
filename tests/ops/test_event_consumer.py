"""``ops/examples/event_consumer.py``: every client's events processed at least once and acked, across a kill.

Real parts: the gateway writes the events (cancelled messages of several clients), the example runs as a
real process against the real Redis, is SIGKILLed mid-way through its backlog and started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from redis.asyncio import Redis

from smsgw.store import keys
from tests.gateway.conftest import numbers
from tests.harness import ROOT, Stack

CONSUMER = ROOT / "ops" / "examples" / "event_consumer.py"
GROUP = "status-store"
CLIENTS = {"auth": "auth-service", "shop": "shop", "ops": "ops", "limited": "limited"}


async def cancel_all(stack: Stack, who: str, count: int, start: int) -> None:
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    created = await stack.send({"to": numbers(count, start), "text": "x", "send_at": later}, who=who)
    url = f"{stack.url}/v1/messages/{created['id']}"
    async with stack.http.delete(url, headers=stack.auth(who)) as answer:
        assert answer.status == 200, await answer.text()


async def consumer(redis_url: str, log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(CONSUMER),
        *("--redis-url", redis_url, "--group", GROUP, "--consumer", "pod-1"),
        *("--claim-idle-ms", "300", "--rescan", "0.5"),
        stdout=asyncio.subprocess.PIPE,
        stderr=log.open("ab"),
    )


async def read_lines(process: asyncio.subprocess.Process, seen: Counter[tuple[str, str]], until: int) -> None:
    assert process.stdout is not None
    while sum(seen.values()) < until:
        line = await process.stdout.readline()
        if not line:
            return
        record = json.loads(line)
        assert set(record) >= {"stream", "id", "message_id", "client", "number", "status"}
        assert record["status"] == "cancelled"
        seen[(record["stream"], record["id"])] += 1


async def pending(redis: Redis) -> int:
    total = 0
    for name in CLIENTS.values():
        if await redis.exists(keys.client_stream(name)):
            total += int((await redis.xpending(keys.client_stream(name), GROUP))["pending"])
    return total


async def test_every_event_is_processed_and_acked_across_a_kill(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    seen: Counter[tuple[str, str]] = Counter()
    log = tmp_path / "consumer.log"
    async with Stack(redis_url, worker=False) as stack:
        await cancel_all(stack, "auth", 10_000, 0)
        await cancel_all(stack, "shop", 3_000, 20_000)
        await cancel_all(stack, "ops", 20, 40_000)

        first = await consumer(redis_url, log)
        await asyncio.wait_for(read_lines(first, seen, until=1_000), 60)
        first.send_signal(signal.SIGKILL)  # mid-way through its backlog, between a read and its acks
        rest, _ = await first.communicate()
        for line in rest.splitlines():  # printed before the kill: processed, perhaps not acked
            record = json.loads(line)
            seen[(record["stream"], record["id"])] += 1
        assert await pending(redis) > 0, "the kill left nothing unacknowledged: the test proves nothing"

        await cancel_all(stack, "limited", 5, 50_000)  # a client whose stream did not exist before
        await cancel_all(stack, "auth", 30, 60_000)

    expected = {
        (keys.client_stream(name), entry_id)
        for name in CLIENTS.values()
        for entry_id, _ in await redis.xrange(keys.client_stream(name))
    }
    assert len(expected) == 10_000 + 3_000 + 20 + 5 + 30
    second = await consumer(redis_url, log)
    try:
        deadline = time.monotonic() + 90
        while not (expected <= set(seen) and await pending(redis) == 0):
            assert time.monotonic() < deadline, (len(expected - set(seen)), await pending(redis))
            with contextlib.suppress(TimeoutError):  # a read cancelled mid-line loses nothing
                await asyncio.wait_for(read_lines(second, seen, until=sum(seen.values()) + 1), 0.5)
    finally:
        second.kill()
        await second.wait()
    assert set(seen) == expected  # every event at least once, nothing that is not an event
    duplicates = sum(count - 1 for count in seen.values())
    assert duplicates < 200, duplicates  # only what was in flight at the kill (at most one read of 100)
    for name in CLIENTS.values():
        groups = await redis.xinfo_groups(keys.client_stream(name))
        assert [(g["name"], g["pending"]) for g in groups] == [(GROUP, 0)]
