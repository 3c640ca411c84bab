"""Every client's status events, each processed at least once and acknowledged, across restarts.

A consumer group per client stream (``smsgw:stream:{client}``), all read with one XREADGROUP; entries are
XACKed after processing, and entries a crashed consumer left unacknowledged are taken over with XAUTOCLAIM
once idle for ``--claim-idle-ms``. An entry is processed again when a consumer dies between processing and
XACK, so ``process`` must be idempotent on the stream id. Run any number of consumers with distinct names:

    python ops/examples/event_consumer.py --redis-url redis://redis:6379/0 --group status-store \
        --consumer "$HOSTNAME"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

STREAMS = "smsgw:stream:*"  # the gateway's per-client event streams (smsgw/keys.py)


async def process(stream: str, entry_id: str, event: dict[str, Any]) -> None:
    """Your work, idempotent on ``entry_id`` (e.g. an upsert keyed by it). This one prints a JSON line."""
    print(json.dumps({"stream": stream, "id": entry_id, **event}), flush=True)


async def handle(redis: Redis, group: str, stream: str, entries: list[Any]) -> None:
    for entry_id, fields in entries:
        if fields:  # None: trimmed away before it was claimed (the consumer was down beyond retention)
            await process(stream, entry_id, json.loads(fields["event"]))
        await redis.xack(stream, group, entry_id)


async def join(redis: Redis, args: argparse.Namespace) -> list[str]:
    """Every client stream, with the group created where missing (new clients' streams appear over time)."""
    streams = sorted([key async for key in redis.scan_iter(match=STREAMS, _type="stream")])
    for stream in streams:
        try:  # no MKSTREAM: a stream key the gateway did not write would be one without retention
            await redis.xgroup_create(stream, args.group, id=args.start)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        start = "0-0"  # take over what a dead consumer (or this one, before a restart) did not acknowledge
        while True:
            start, claimed, *_ = await redis.xautoclaim(
                stream, args.group, args.consumer, args.claim_idle_ms, start_id=start, count=100
            )
            await handle(redis, args.group, stream, claimed)
            if start == "0-0":
                break
    return streams


async def run(args: argparse.Namespace) -> None:
    redis = Redis.from_url(args.redis_url, decode_responses=True)
    streams: list[str] = []
    joined = 0.0
    while True:
        if time.monotonic() - joined > args.rescan:
            streams, joined = await join(redis, args), time.monotonic()
        if not streams:
            await asyncio.sleep(1)
            continue
        try:
            read = await redis.xreadgroup(
                args.group, args.consumer, dict.fromkeys(streams, ">"), count=100, block=5000
            )
        except ResponseError as exc:  # NOGROUP: a stream vanished (idle past retention) and came back
            if "NOGROUP" not in str(exc):
                raise
            joined = 0.0
            continue
        for stream, entries in read or []:
            await handle(redis, args.group, stream, entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--group", required=True, help="one group per consuming service")
    parser.add_argument("--consumer", required=True, help="unique per running instance")
    parser.add_argument("--start", default="0", help="where a new group starts: 0 (all kept) or $ (new)")
    parser.add_argument("--claim-idle-ms", type=int, default=60_000, help="> your longest processing")
    parser.add_argument("--rescan", type=float, default=10.0, help="seconds between stream rescans")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
