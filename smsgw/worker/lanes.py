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
                if free <= 0:
                    await self._wait_for_slot(IDLE_CAP)
                    continue
                taken = await self._store.take(self.name, free, self.window)
                started = self._start_all(taken.jobs)
                if taken.capacity_wait > 0:
                    await self._wait_for_slot(min(IDLE_CAP, taken.capacity_wait))
                elif taken.idle is not None and started < free:
                    # Nothing more due: block until an accept nudges us or the next timer (at most a second).
                    await self._store.wait_for_work(self.name, min(IDLE_CAP, taken.idle))
                pause = 0.1
            except Exception as exc:
                # An outage is expected; anything else (a reply no one listed, a bug) is logged loudly, but
                # must not end the lane either: the worker would go on beating and answering /healthz while
                # it never took this lane's work again.
                if isinstance(exc, StoreUnavailable):
                    log.warning("lane.redis_unavailable", lane=self.name, error=str(exc))
                else:
                    log.exception("lane.failed", lane=self.name)
                await asyncio.sleep(pause)
                pause = min(5.0, pause * 2)
        if self.running:
            await asyncio.wait(list(self.running.values()))

    def _start_all(self, jobs: list[Job]) -> int:
        started = 0
        for job in jobs:
            if isinstance(job, Expired):
                self._dispatcher.run_expired(job)
            elif job.unit_id not in self.running:  # one run per unit per process, whatever Redis hands out
                self._start(job)
                started += 1
        return started

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

    async def _wait_for_slot(self, seconds: float) -> None:
        """Sleep until a slot frees (or a stop is asked), at most ``seconds``."""
        self._slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._slot_freed.wait()
