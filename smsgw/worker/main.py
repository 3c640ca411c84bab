"""``smsgw worker``: three lane workers, their upkeep, and ``/healthz`` ``/readyz`` ``/metrics``.

SIGTERM (or SIGINT) stops taking work, lets in-flight uBill calls finish within ``SMSGW_SHUTDOWN_GRACE``, and
only then cancels what is left (a cancelled unit is re-run elsewhere; one cut mid-call follows the ambiguity
policy). A lane worker that dies is restarted; Redis going away is waited out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import time
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from smsgw.lua import Scripts
from smsgw.metrics import CONTENT_TYPE, WorkerMetrics, render
from smsgw.redisdb import REDIS_ERRORS, arq_pool, connect
from smsgw.settings import LANES, Settings
from smsgw.ubill import UbillClient
from smsgw.worker import upkeep
from smsgw.worker.breaker import STATE_NAMES, CircuitBreaker
from smsgw.worker.dispatch import Dispatcher
from smsgw.worker.lanes import IDLE_CAP, LaneStopped, LaneWorker
from smsgw.worker.limiter import DispatchLimiter

__all__ = ["WorkerProcess", "run"]

log = structlog.get_logger(__name__)


class WorkerProcess:
    """Everything one ``smsgw worker`` runs, built from settings; ``serve()`` until ``stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.redis = connect(settings)
        self.pool = arq_pool(settings, blocking=IDLE_CAP)
        self.scripts = Scripts.load(self.redis)
        self.session: aiohttp.ClientSession | None = None
        self.workers: list[LaneWorker] = []
        self.stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    def _dispatcher(self, session: aiohttp.ClientSession) -> Dispatcher:
        s = self.settings
        ubill = UbillClient(
            session,
            s.ubill_base_url,
            s.ubill_api_key,
            timeout=s.ubill_timeout,
            connect_timeout=s.ubill_connect_timeout,
            max_url_length=s.ubill_max_url_length,
        )
        breaker = CircuitBreaker(s.breaker_threshold, s.breaker_cooldown, on_change=self._breaker_changed)
        owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        return Dispatcher(
            s,
            self.redis,
            self.scripts,
            ubill,
            breaker,
            DispatchLimiter(self.scripts, s, self.metrics),
            self.metrics,
            owner,
        )

    def _breaker_changed(self, state: int) -> None:
        self.metrics.breaker_state.set(state)
        log.warning("breaker.state", state=STATE_NAMES[state])

    async def serve(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=sum(self.settings.concurrency.values()) + 4, keepalive_timeout=15
        )
        self.session = aiohttp.ClientSession(connector=connector, trace_configs=[UbillClient.trace_config()])
        self.dispatcher = self._dispatcher(self.session)
        s = self.settings
        self.workers = [
            LaneWorker(lane, self.pool, self.dispatcher, s.concurrency[lane], s.job_lease) for lane in LANES
        ]
        ubill = self.dispatcher.ubill
        duties = [
            (s.job_lease / 3, upkeep.lease_heartbeat(self.pool, self.workers, s.job_lease), "lease"),
            (
                s.reconcile_interval,
                upkeep.reconciler(self.redis, self.scripts, ubill, s, self.metrics),
                "reconcile",
            ),
        ]
        if s.balance_interval > 0:
            duties.append(
                (
                    s.balance_interval,
                    upkeep.balance_poller(self.redis, ubill, self.metrics, s.balance_interval),
                    "balance",
                )
            )
        self._tasks = [asyncio.create_task(self._supervise(w)) for w in self.workers]
        self._tasks += [asyncio.create_task(upkeep.every(i, duty, name)) for i, duty, name in duties]
        log.info(
            "worker.started", lanes=list(LANES), concurrency=dict(s.concurrency), owner=self.dispatcher.owner
        )
        await self.stopped.wait()
        await self._drain()

    async def _supervise(self, worker: LaneWorker) -> None:
        while True:
            try:
                await worker.main()
            except LaneStopped:
                return
            except Exception:
                log.exception("lane.crashed", lane=worker.lane)
                await asyncio.sleep(1.0)

    def stop(self) -> None:
        self.stopped.set()

    async def _drain(self) -> None:
        """Stop taking work; give in-flight calls the grace period; cancel the rest; close resources."""
        self.dispatcher.stopping.set()
        for worker in self.workers:
            worker.request_stop()
        deadline = time.monotonic() + self.settings.shutdown_grace
        log.info("worker.draining", in_flight=len(self._running()), grace_s=self.settings.shutdown_grace)
        while (running := self._running()) and time.monotonic() < deadline:
            await asyncio.wait(running, timeout=max(0.0, deadline - time.monotonic()))
        for task in self._running():
            task.cancel()  # past the grace period: re-run elsewhere (an interrupted call is ambiguous)
        if self._running():
            await asyncio.wait(self._running(), timeout=5)
        lanes, duties = self._tasks[: len(self.workers)], self._tasks[len(self.workers) :]
        _done, stuck = await asyncio.wait(lanes, timeout=IDLE_CAP * 3)  # each ends on its next iteration
        for task in [*stuck, *duties]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        await self.pool.aclose()
        await self.redis.aclose()
        log.info("worker.stopped")

    def _running(self) -> list[asyncio.Task[Any]]:
        return [t for w in self.workers for t in w.tasks.values() if not t.done()]

    def http_app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.get("/metrics", self._metrics),
            ]
        )
        return app

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        try:
            await self.redis.ping()
        except REDIS_ERRORS:
            return web.json_response({"status": "unavailable", "redis": "unreachable"}, status=503)
        alive = bool(self._tasks) and all(not t.done() for t in self._tasks[: len(self.workers)])
        body = {
            "status": "ready" if alive else "starting",
            "redis": "ok",
            "breaker": STATE_NAMES[self.dispatcher.breaker.state] if self.workers else "closed",
        }
        return web.json_response(body, status=200 if alive and not self.stopped.is_set() else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = await render(self.metrics.registry, upkeep.refresh_gauges(self.redis, self.metrics))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def run(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, serving the worker's HTTP endpoints on ``SMSGW_WORKER_HTTP_PORT``."""
    process = WorkerProcess(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, process.stop)
    runner = web.AppRunner(process.http_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.worker_http_port)
    await site.start()
    try:
        await process.serve()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
