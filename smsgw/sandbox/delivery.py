"""Delivery callbacks: plan each number's status sequence, then play it to the callback URL on time.

One heap of due jobs (a job is one callback of one number) and one dispatcher feeding a fixed pool of
workers keep memory and concurrency bounded however many numbers a call carries. A number's next step is
queued only after its current callback was tried, so steps arrive in planned order unless reordered. A
failed callback is tried again later, never in a sleeping worker, so one dead receiver cannot stall the rest.
Report statuses advance when a step happens, whether or not a callback URL is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import aiohttp
import structlog
from yarl import URL

from smsgw.phones import mask
from smsgw.sandbox.config import OUTCOMES, SandboxConfig
from smsgw.sandbox.state import CallbackAttempt, Clock, SandboxState, Send
from smsgw.ubill import DATE_FORMAT, format_local

__all__ = ["Deliverer", "plan"]

log = structlog.get_logger(__name__)

SENT: Final = 0
PENDING: Final = 3
WORKERS: Final = 50
MAX_RETRIES: Final = 3
STEP_GAP: Final = 0.005  # seconds between a number's successive steps
CALLBACK_TIMEOUT: Final = aiohttp.ClientTimeout(total=5.0)


@dataclass(slots=True)
class _Job:
    sms_id: int
    number: str
    steps: tuple[int, ...]
    generation: int
    silent: bool = False
    index: int = 0
    attempt: int = 0
    date: str = ""

    @property
    def status_id(self) -> int:
        return self.steps[self.index]


def plan(config: SandboxConfig, rng: random.Random) -> tuple[int, ...]:
    """One number's callback statusIDs, in the order they will be sent."""
    steps = [step for step, on in ((SENT, config.sent_first), (PENDING, config.pending_first)) if on]
    steps.append(_final(config, rng))
    if config.reorder_rate and rng.random() < config.reorder_rate:
        steps.reverse()
    if config.duplicate_rate:
        rate = config.duplicate_rate
        steps = [s for step in steps for s in ((step, step) if rng.random() < rate else (step,))]
    return tuple(steps)


def _final(config: SandboxConfig, rng: random.Random) -> int:
    names = list(config.outcomes)
    if len(names) == 1:
        return OUTCOMES[names[0]]
    return OUTCOMES[rng.choices(names, weights=[config.outcomes[n] for n in names])[0]]


class Deliverer:
    """Plays planned callbacks; ``start`` and ``stop`` bracket its tasks (see the app's cleanup_ctx)."""

    def __init__(
        self, config: Callable[[], SandboxConfig], state: SandboxState, rng: random.Random, clock: Clock
    ) -> None:
        self._config = config
        self._state = state
        self._rng = rng
        self._clock = clock
        self._heap: list[tuple[float, int, _Job]] = []
        self._order = itertools.count()
        self._generation = 0
        self._wake = asyncio.Event()
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=WORKERS * 4)
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def pending(self) -> int:
        """Callbacks (steps and retries) not yet tried."""
        return len(self._heap) + self._queue.qsize()

    def schedule(self, send: Send, delay: float) -> None:
        """Plan every number of an accepted call; the first steps fall due ``delay`` seconds from now."""
        config = self._config()
        due = asyncio.get_running_loop().time() + delay
        for number in send.numbers:
            silent = bool(config.lost_rate) and self._rng.random() < config.lost_rate
            self._push(due, _Job(send.sms_id, number, plan(config, self._rng), self._generation, silent))
        self._wake.set()

    def clear(self) -> None:
        """Drop every callback not yet tried; one in flight finishes but is not logged."""
        self._generation += 1
        self._heap.clear()
        while not self._queue.empty():
            self._queue.get_nowait()

    def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._tasks = [asyncio.create_task(self._dispatch(), name="sandbox-dispatch")]
        self._tasks += [asyncio.create_task(self._work(), name=f"sandbox-worker-{i}") for i in range(WORKERS)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _push(self, due: float, job: _Job) -> None:
        heapq.heappush(self._heap, (due, next(self._order), job))

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if self._heap and self._heap[0][0] <= loop.time():
                await self._queue.put(heapq.heappop(self._heap)[2])
                continue
            timeout = self._heap[0][0] - loop.time() if self._heap else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._deliver(job)
            except Exception:  # a bug in one callback must not kill a worker
                log.exception("sandbox callback crashed", sms_id=job.sms_id, number=mask(job.number))

    async def _deliver(self, job: _Job) -> None:
        if job.generation != self._generation:
            return
        if job.attempt == 0:
            job.date = format_local(self._clock(), DATE_FORMAT)
            self._state.set_status(job.sms_id, job.number, job.status_id)
        config = self._config()
        if config.callback_url and not job.silent:
            attempt = await self._call(job, config.callback_url, config.callback_key.reveal())
            if job.generation != self._generation:
                return
            self._state.callbacks.append(attempt)
            self._retry_if_failed(job, attempt, config.callback_retry_delay)
        if job.attempt == 0 and job.index + 1 < len(job.steps):
            next_step = dataclasses.replace(job, index=job.index + 1, date="")
            self._push(asyncio.get_running_loop().time() + STEP_GAP, next_step)
            self._wake.set()

    def _retry_if_failed(self, job: _Job, attempt: CallbackAttempt, delay: float) -> None:
        if attempt.http_status is not None and 200 <= attempt.http_status < 300:
            return
        outcome = attempt.error or attempt.http_status
        if job.attempt >= MAX_RETRIES:
            log.warning(
                "sandbox callback given up",
                sms_id=job.sms_id,
                number=mask(job.number),
                status_id=job.status_id,
                attempts=job.attempt + 1,
                last=outcome,
            )
            return
        log.debug("sandbox callback failed", sms_id=job.sms_id, number=mask(job.number), last=outcome)
        retry = dataclasses.replace(job, attempt=job.attempt + 1)
        self._push(asyncio.get_running_loop().time() + delay, retry)
        self._wake.set()

    async def _call(self, job: _Job, url: str, key: str) -> CallbackAttempt:
        assert self._session is not None, "Deliverer.start() was not called"
        params = {
            "key": key,
            "smsID": str(job.sms_id),
            "number": job.number,
            "statusID": str(job.status_id),
            "date": job.date,
        }
        entry = CallbackAttempt(job.sms_id, job.number, job.status_id, job.attempt + 1, self._clock())
        try:
            async with self._session.get(
                URL(url).update_query(params), timeout=CALLBACK_TIMEOUT, allow_redirects=False
            ) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return dataclasses.replace(entry, error=type(exc).__name__)
        return dataclasses.replace(entry, http_status=response.status)
