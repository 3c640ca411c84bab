"""Redis as an operator sees it: memory and connections sampled every second, and a key audit at the end.

Only public server facts are read (``INFO memory``, ``INFO clients``, ``SCAN``, ``TTL``); key names are
grouped by shape (segments holding digits become ``*``), so the audit does not depend on the product's key
layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from typing import Any, Final

from redis.asyncio import Redis

from ops.soak.nodes import Topology
from ops.soak.records import Journal, Sample

__all__ = ["Sampler", "audit_keys", "key_audit", "key_shape"]

_ID_LIKE: Final = re.compile(r"\d")
_SCAN_BATCH: Final = 1000


def key_shape(key: str) -> str:
    """``smsgw:msg:msg_19b1f0c2`` -> ``smsgw:msg:*``: every segment holding a digit becomes ``*``."""
    parts = key.split(":")
    shaped = [p if not _ID_LIKE.search(p) else "*" for p in parts]
    return ":".join(shaped)


class Sampler:
    """Appends a ``Sample`` to the journal every ``every`` seconds until stopped (errors read as None)."""

    def __init__(self, topology: Topology, journal: Journal, every: float = 1.0) -> None:
        self.topology = topology
        self.journal = journal
        self.every = every
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> Sample:
        memory: int | None = None
        clients: int | None = None
        with contextlib.suppress(Exception):
            node = await self.topology.primary()
            async with node.admin() as client:
                memory = int((await client.info("memory"))["used_memory"])
                clients = int((await client.info("clients"))["connected_clients"])
        sample = Sample(time.time(), memory, clients)
        self.journal.samples.append(sample)
        return sample

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.every)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def key_audit(topology: Topology) -> dict[str, Any]:
    """Every key of the primary by shape (``audit_keys``)."""
    node = await topology.primary()
    async with node.admin() as client:
        return await audit_keys(client)


async def audit_keys(client: Redis) -> dict[str, Any]:
    """Every key by shape: how many, and how many have no TTL (they live until something deletes them)."""
    total: Counter[str] = Counter()
    no_ttl: Counter[str] = Counter()
    client.connection_pool.connection_kwargs["socket_timeout"] = 10
    keys: list[str] = []
    async for key in client.scan_iter(count=_SCAN_BATCH):
        keys.append(key)
    for start in range(0, len(keys), _SCAN_BATCH):
        chunk = keys[start : start + _SCAN_BATCH]
        async with client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.ttl(key)
            ttls = await pipe.execute()
        for key, ttl in zip(chunk, ttls, strict=True):
            if ttl == -2:  # expired between the scan and the TTL
                continue
            shape = key_shape(key)
            total[shape] += 1
            if ttl == -1:
                no_ttl[shape] += 1
    return {
        "keys": sum(total.values()),
        "without_ttl": sum(no_ttl.values()),
        "by_shape": {shape: {"keys": total[shape], "without_ttl": no_ttl[shape]} for shape in sorted(total)},
    }
