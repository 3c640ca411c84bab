"""One loop per lane in each worker process, with its own job slots and blocking wake-ups.

Each lane (otp, transactional, bulk) is its own sorted set of unit timers (``smsgw:lane:{lane}``) served
by its own ``Lane`` with ``SMSGW_CONCURRENCY_{LANE}`` slots, so an OTP never waits behind bulk for a slot and
a lower lane keeps its slots under any higher-lane stream. A lane takes due units with one script call per
batch (``store/lua/take.lua``: expiry, uBill capacity, claim and lease together) and runs each as a task. With
nothing due it blocks in ``BLPOP smsgw:wake:{lane}`` (the accept script pushes there) for at most the time to
its next timer, capped at a second: wake-up in about a millisecond, no busy polling.

Why not arq's worker: arq takes a job in four round trips and runs it with two more (about ten commands,
plus a job record per unit), more than the rest of a dispatch costs; its in-progress key keeps running jobs in
the due window, so a worker with free slots could find only running jobs (issue 10). Here a running unit's
timer is its lease, moved ahead of now, and the unit record holds everything a job needs.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from smsgw.errors import StoreUnavailable
from smsgw.metrics import WorkerMetrics
from smsgw.store.dispatch import Dispatch, Expired, Job
from smsgw.worker.dispatch import Dispatcher

__all__ = ["IDLE_CAP", "Lane"]

log = structlog.get_logger(__name__)
IDLE_CAP = 1.0  # longest blocking wait: also how soon a unit freed by a dead worker's lease is seen


class Lane:
    def __init__(
        self, name: str, slots: int, store: Dispatch, dispatcher: Dispatcher, metrics: WorkerMetrics
    ) -> None:
        self.name = name
        self.slots = slots
        self._store = store
        self._dispatcher = dispatcher
        self._metrics = metrics
        # Due timers looked at per take: running units are leased ahead of now, so this only has to see past
        # units another worker is running (busy) or that are waiting for capacity.
        self.window = max(5 * slots, 100)
        self.running: dict[str, asyncio.Task[Any]] = {}
        self._slot_freed = asyncio.Event()
        self._stopping = False

    def stop(self) -> None:
        """Take no more work; ``run`` returns once the running units are done (or cancelled)."""
        self._stopping = True
        self._slot_freed.set()

    def leased(self) -> list[str]:
        """Units whose lease the heartbeat keeps ahead."""
        return [unit for unit, task in self.running.items() if not task.done()]

    async def run(self) -> None:
        pause = 0.1
        while not self._stopping:
            free = self.slots - len(self.running)
            try:
                started, wait = await self._take(free) if free > 0 else (0, 0.0)
                if not started:
                    await self._idle(free, wait)
                pause = 0.1
            except StoreUnavailable as exc:
                log.warning("lane.redis_unavailable", lane=self.name, error=str(exc))
                await asyncio.sleep(pause)
                pause = min(5.0, pause * 2)
        if self.running:
            await asyncio.wait(list(self.running.values()))

    async def _take(self, free: int) -> tuple[int, float]:
        jobs, wait = await self._store.take(self.name, free, self.window)
        started = 0
        for job in jobs:
            if isinstance(job, Expired):
                self._dispatcher.run_expired(job)
            elif job.unit_id not in self.running:  # one run per unit per process, whatever Redis hands out
                self._start(job)
                started += 1
        return started, wait

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._run(job))
        self.running[job.unit_id] = task
        task.add_done_callback(lambda _: self._finished(job.unit_id))

    def _finished(self, unit: str) -> None:
        self.running.pop(unit, None)
        self._slot_freed.set()

    async def _run(self, job: Job) -> None:
        structlog.contextvars.bind_contextvars(unit=job.unit_id, lane=self.name)
        gauge = self._metrics.jobs_running.labels(self.name)
        gauge.inc()
        try:
            await self._dispatcher.run(job)
        except Exception:
            # A bug must not drop the unit: its timer brings it back after the lease, where this process
            # treats it as its own interrupted attempt (ambiguous if a request may have left).
            log.exception("dispatch.failed")
        finally:
            gauge.dec()

    async def _idle(self, free: int, wait: float) -> None:
        """Sleep until a slot frees (when full), capacity comes (when waiting for it) or work arrives."""
        self._slot_freed.clear()
        if free <= 0 or wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(IDLE_CAP, wait) if wait > 0 else IDLE_CAP):
                    await self._slot_freed.wait()
            return
        await self._store.wait_for_work(self.name, IDLE_CAP)
