"""One arq worker per lane, with blocking wake-ups instead of arq's poll sleep.

arq has no priorities and polls every ``poll_delay``. Each lane is its own arq queue (``smsgw:lane:{lane}``)
served by its own ``LaneWorker`` with its own job slots, so an OTP never waits behind bulk for a slot, and a
lower lane keeps its slots under any higher-lane stream. When a lane has nothing due, its worker blocks in
``BLPOP smsgw:wake:{lane}`` (the gateway pushes there in the same script that queues the work) for at most
the time until its next deferred job, capped at one second: wake-up in about a millisecond, no busy polling.

Taking jobs: arq checks and marks each due job with WATCH/EXISTS/ZSCORE/MULTI, four round trips per job;
``lua/take.lua`` takes a batch in one (same keys, same meaning), which shortens an OTP's path under load.

Crash recovery: arq re-runs a job whose ``arq:in-progress`` key expired (``job_timeout`` + 10 s by default).
Here the key is set to a lease and refreshed while the job runs (``upkeep.lease_heartbeat``), so a killed
worker's units are picked up within ``SMSGW_JOB_LEASE`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from arq.connections import ArqRedis
from arq.worker import Worker, func

from smsgw import keys
from smsgw.clock import now_ms
from smsgw.lua import source
from smsgw.redisdb import REDIS_ERRORS, json_dumps, json_loads
from smsgw.worker.dispatch import Dispatcher, dispatch

__all__ = ["LaneStopped", "LaneWorker"]

log = structlog.get_logger(__name__)
IDLE_CAP = 1.0  # longest blocking wait: also how soon a unit freed by a dead worker's lease is seen
JOB_TIMEOUT = 3600  # arq's own timeout would drop a unit: our calls and waits are bounded well below this
NO_LIMIT = 10**9  # attempts are counted by the dispatcher (dead letters), never by arq


class LaneStopped(Exception):
    """Ends ``LaneWorker.main()`` once stopped and idle: arq's loop has no exit of its own, and cancelling it
    is not enough on Python 3.11 (``asyncio.timeout`` can turn a cancellation into its own timeout)."""


class LaneWorker(Worker):
    def __init__(
        self, lane: str, pool: ArqRedis, dispatcher: Dispatcher, max_jobs: int, lease: float
    ) -> None:
        self.lane = lane
        self.lease_ms = int(lease * 1000)
        self._slot_freed = asyncio.Event()
        self._redis_backoff = 0.1
        self._stopping = False
        super().__init__(
            functions=[func(dispatch, name="dispatch", max_tries=NO_LIMIT, timeout=JOB_TIMEOUT)],
            queue_name=keys.lane_queue(lane),
            redis_pool=pool,
            handle_signals=False,
            max_jobs=max_jobs,
            job_timeout=JOB_TIMEOUT,
            keep_result=0,
            poll_delay=0,
            max_tries=NO_LIMIT,
            health_check_interval=10,
            ctx={"lane": lane, "dispatcher": dispatcher},
            job_serializer=json_dumps,
            job_deserializer=json_loads,
            log_results=False,
        )
        # arq would set the in-progress key to job_timeout + 10 s; take.lua sets the lease instead, kept alive
        # by upkeep.lease_heartbeat while the job runs, so a dead worker's job is free again in seconds.
        self._take = pool.register_script(source("take"))

    def request_stop(self) -> None:
        """Stop picking jobs now; ``main()`` raises ``LaneStopped`` once its running jobs are done."""
        self.allow_pick_jobs = False
        self._stopping = True
        self._slot_freed.set()

    async def _poll_iteration(self) -> None:
        """arq's iteration with one change: due jobs are taken by one script (see ``lua/take.lua``)."""
        if self._stopping and not any(not task.done() for task in self.tasks.values()):
            raise LaneStopped(self.lane)
        taken = 0
        try:
            if self.allow_pick_jobs and self.job_counter < self.max_jobs:
                jobs = await self._take_due(self.max_jobs - self.job_counter)
                taken = len(jobs)
                await self._start(jobs)
            for job_id, task in list(self.tasks.items()):
                if task.done():
                    del self.tasks[job_id]
                    task.result()  # a failure of arq's own bookkeeping surfaces here, as in arq
            await self.heart_beat()
        except REDIS_ERRORS as exc:
            log.warning("lane.redis_unavailable", lane=self.lane, error=type(exc).__name__)
            await asyncio.sleep(self._redis_backoff)
            self._redis_backoff = min(5.0, self._redis_backoff * 2)
            return
        self._redis_backoff = 0.1
        if not taken:  # nothing free to take (or no free slot): wait for either to change
            await self._idle()

    async def _idle(self) -> None:
        """Sleep until a slot frees (when full) or work arrives (when empty), never longer than a second."""
        self._slot_freed.clear()
        if self.job_counter >= self.max_jobs or not self.allow_pick_jobs:
            # Ends by a freed slot, a stop request or the cap; stopping itself goes by LaneStopped.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_CAP):
                    await self._slot_freed.wait()
            return
        try:
            # Redis >= 6 takes a fractional timeout; redis-py types it as int.
            await self.pool.blpop([keys.wake(self.lane)], timeout=await self._until_next_due())  # type: ignore[arg-type,misc]
        except REDIS_ERRORS as exc:
            log.warning("lane.redis_unavailable", lane=self.lane, error=type(exc).__name__)
            await asyncio.sleep(self._redis_backoff)

    async def _until_next_due(self) -> float:
        now = now_ms()
        upcoming = await self.pool.zrangebyscore(
            self.queue_name, f"({now}", "+inf", start=0, num=1, withscores=True
        )
        if not upcoming:
            return IDLE_CAP
        return min(IDLE_CAP, max(0.001, (float(upcoming[0][1]) - now) / 1000))

    async def _take_due(self, count: int) -> list[tuple[str, int]]:
        raw = await self._take(
            keys=[self.queue_name], args=[now_ms(), count, self.lease_ms, self.queue_read_limit]
        )
        return [(raw[i].decode(), int(float(raw[i + 1]))) for i in range(0, len(raw), 2)]

    async def _start(self, jobs: list[tuple[str, int]]) -> None:
        """Run taken jobs as arq does after its own checks (``run_job`` does the rest: retries, results)."""
        for job_id, score in jobs:
            await self.sem.acquire()
            self.job_counter += 1
            task = asyncio.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_freed.set()

    @property
    def running_job_ids(self) -> list[str]:
        return [job_id for job_id, task in self.tasks.items() if not task.done()]
