"""Concurrent calls of one Lua script, sent together as pipelines of up to ``FLUSH_AT`` calls.

On the accept path redis-py's own work per command (taking a pooled connection, health and timeout checks,
packing, one socket write, one read) cost more than the rest of a request. Calls made in one event-loop pass
share a pipeline: one connection, one write, replies read in order. Each call still gets its own reply or
its own error; nothing is transactional across calls.

A batch leaves as soon as it holds ``FLUSH_AT`` calls, not only at the end of the pass: under load one pass
parses dozens of requests (several milliseconds), and holding the first call until the last one left Redis
idle meanwhile, then the process idle while the whole batch waited for Redis (17 % idle at 64 connections).
Early batches are capped (``EARLY_IN_FLIGHT``): connections stay bounded by passes, not by calls.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

__all__ = ["ScriptBatcher", "wait_for"]

Call = tuple[list[Any], list[Any], "asyncio.Future[Any]"]
# Calls per pipeline. ops.bench's accept figure, production shape, 64 connections, alternated rounds on one
# machine: 8 → 0.61×, 16 → 0.66×, 32 → 0.65× the baseline, against 0.57× for one batch per pass.
FLUSH_AT = 16
# Full batches leave early only while fewer than this many of a batcher's pipelines are on their way; past it,
# the end of the pass sends the rest as one (as before), so a crowd on a slow Redis does not take a pooled
# connection per 16 calls.
EARLY_IN_FLIGHT = 4


def wait_for(replicas: int, timeout_s: float) -> tuple[int, int] | None:
    """The ``wait`` of a batcher from SMSGW_REDIS_WAIT_REPLICAS / _TIMEOUT (None: no WAIT)."""
    return (replicas, int(timeout_s * 1000)) if replicas else None


class ScriptBatcher:
    """Each call answers ``(script result, replicas)``: with ``wait`` = (replicas, timeout ms) every
    pipeline ends with ``WAIT``, so ``replicas`` says how many replicas had the batch's writes (None
    without ``wait``)."""

    def __init__(
        self, redis: Redis, script: AsyncScript, flush_at: int = FLUSH_AT, wait: tuple[int, int] | None = None
    ) -> None:
        self._redis = redis
        self._script = script
        self._flush_at = flush_at
        self._wait = wait
        self._pending: list[Call] = []
        self._end_of_pass: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if len(self._pending) >= self._flush_at and len(self._tasks) < EARLY_IN_FLIGHT:
            self._flush()
        elif self._end_of_pass is None:
            self._end_of_pass = asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Send what is pending: a full batch now, the rest at the end of the loop pass."""
        if self._end_of_pass is not None:
            self._end_of_pass.cancel()
            self._end_of_pass = None
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Call]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
        if self._wait is not None:  # WAIT covers every earlier write of this connection: the whole batch
            pipe.execute_command("WAIT", *self._wait)
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every call of the batch failed with it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        replicas = None
        if self._wait is not None:
            waited = results.pop()
            replicas = waited if isinstance(waited, int) else 0
        for (keys, args, future), answer in zip(batch, results, strict=True):
            # NOSCRIPT: Redis restarted and lost its scripts; the script object re-loads it and retries (a
            # retried call is not covered by the batch's WAIT: it reports no replica).
            retried = isinstance(answer, NoScriptError)
            result = await self._retry(keys, args) if retried else answer
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result((result, 0 if retried and replicas is not None else replicas))

    async def _retry(self, keys: list[Any], args: list[Any]) -> Any:
        try:
            return await self._script(keys=keys, args=args)
        except Exception as exc:  # handed to the caller's future
            return exc
