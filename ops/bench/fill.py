"""Queue work ahead of a measurement: single-recipient messages through a gateway, as fast as it takes
them."""

from __future__ import annotations

import time

from ops.bench.harness import TOKEN, Bench
from ops.bench.loadgen import LoadSpec
from ops.bench.numbers import mobile_prefixes
from ops.bench.procs import Proc
from smsgw.store import keys

__all__ = ["fill", "queued"]

ASSUMED_RPS = 5_000.0  # only sizes each load run (at most 4 s); the loop checks what was queued


async def queued(bench: Bench, lane: str = "transactional") -> int:
    """Units due in the lane (its sorted set also holds running leases and reconciliation timers, ahead)."""
    return int(await bench.redis.zcount(keys.lane_queue(lane), "-inf", int(time.time() * 1000)))


async def fill(
    bench: Bench, generator: str, gateway: Proc, needed: int, *, text: str = "Bench: your code is 482913"
) -> int:
    """``POST /v1/messages`` (plain shape, 64 connections) until at least ``needed`` units are queued in the
    transactional lane; returns how many are."""
    spec = LoadSpec("messages", token=TOKEN, prefixes=mobile_prefixes(), text=text)
    for _ in range(20):
        have = await queued(bench)
        if have >= needed:
            return have
        seconds = min(4.0, max(1.0, (needed - have) / ASSUMED_RPS))
        await bench.load(generator, gateway.url, spec, connections=64, duration=seconds, pinned=False)
    return await queued(bench)
