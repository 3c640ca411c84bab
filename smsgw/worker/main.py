"""``smsgw worker``: three lanes, their duties, and ``/healthz`` ``/readyz`` ``/metrics``.

SIGTERM (or SIGINT) stops taking work, lets in-flight uBill calls finish within ``SMSGW_SHUTDOWN_GRACE``, and
only then cancels what is left (a cancelled unit is re-run after its lease; one cut mid-call follows the
ambiguity policy). Redis going away is waited out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import signal
import socket
import time
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from smsgw.errors import StoreUnavailable
from smsgw.metrics import CONTENT_TYPE, WorkerMetrics, render
from smsgw.settings import LANES, Settings
from smsgw.store import Store
from smsgw.store.batching import wait_for
from smsgw.store.connection import connect
from smsgw.store.dispatch import Capacity, Dispatch
from smsgw.ubill import UbillClient
from smsgw.verify.sealing import open_sms_text
from smsgw.worker import brandcheck, upkeep
from smsgw.worker.breaker import STATE_NAMES, CircuitBreaker
from smsgw.worker.dispatch import Dispatcher
from smsgw.worker.lanes import IDLE_CAP, Lane

__all__ = ["WorkerProcess", "run"]

log = structlog.get_logger(__name__)


class WorkerProcess:
    """Everything one ``smsgw worker`` runs, built from settings; ``serve()`` until ``stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.store = Store(settings)
        self.blocking = connect(settings, blocking=IDLE_CAP, max_connections=len(LANES) + 1)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.dispatch = Dispatch(
            self.store.redis,
            self.blocking,
            self.store.scripts,
            owner=self.owner,
            lease=settings.job_lease,
            capacity=Capacity(
                settings.ubill_rate_calls,
                settings.ubill_rate_numbers,
                {
                    "otp": settings.otp_reserve,
                    "transactional": settings.min_share_transactional,
                    "bulk": settings.min_share_bulk,
                },
            ),
            wait=wait_for(settings.redis_wait_replicas, settings.redis_wait_timeout),
        )
        self.session: aiohttp.ClientSession | None = None
        self.lanes: list[Lane] = []
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
        # Verification SMS texts are stored sealed; this worker opens them for the uBill call.
        opener = functools.partial(open_sms_text, s.verify.keyring) if s.verify.key_source != "none" else None
        return Dispatcher(
            s, self.dispatch, self.store.deliveries, ubill, breaker, self.metrics, open_text=opener
        )

    def _breaker_changed(self, state: int) -> None:
        self.metrics.breaker_state.set(state)
        log.warning("breaker.state", state=STATE_NAMES[state])

    async def serve(self) -> None:
        s = self.settings
        connector = aiohttp.TCPConnector(limit=sum(s.concurrency.values()) + 4, keepalive_timeout=15)
        self.session = aiohttp.ClientSession(connector=connector, trace_configs=[UbillClient.trace_config()])
        self.dispatcher = self._dispatcher(self.session)
        self.lanes = [
            Lane(lane, s.concurrency[lane], self.dispatch, self.dispatcher, self.metrics) for lane in LANES
        ]
        beat = upkeep.heartbeat(self.dispatch, self.lanes)
        with contextlib.suppress(StoreUnavailable):
            await self.store.load_scripts()
            await beat()  # liveness first: take.lua trusts this worker only once it beats
        ubill = self.dispatcher.ubill
        duties = [
            (s.job_lease / 3, beat, "heartbeat"),
            (
                s.housekeeping_interval,
                upkeep.housekeeping(self.store.upkeep, s, self.metrics, s.housekeeping_interval),
                "housekeeping",
            ),
        ]
        if s.balance_interval > 0:
            poller = upkeep.balance_poller(self.store.upkeep, ubill, self.metrics, s.balance_interval)
            duties.append((s.balance_interval, poller, "balance"))
        if s.brands_interval > 0:
            reader = brandcheck.brand_reader(
                self.store.brands, self.store.upkeep, ubill, self.metrics, s.brands_interval
            )
            duties.append((s.brands_interval, reader, "brands"))
        self._tasks = [asyncio.create_task(lane.run()) for lane in self.lanes]
        self._tasks += [asyncio.create_task(upkeep.every(i, duty, name)) for i, duty, name in duties]
        log.info("worker.started", lanes=list(LANES), concurrency=dict(s.concurrency), owner=self.owner)
        await self.stopped.wait()
        await self._drain()

    def stop(self) -> None:
        self.stopped.set()

    async def _drain(self) -> None:
        """Stop taking work; give in-flight calls the grace period; cancel the rest; close resources."""
        self.dispatcher.stopping.set()
        for lane in self.lanes:
            lane.stop()
        deadline = time.monotonic() + self.settings.shutdown_grace
        log.info("worker.draining", in_flight=len(self._running()), grace_s=self.settings.shutdown_grace)
        while (running := self._running()) and time.monotonic() < deadline:
            await asyncio.wait(running, timeout=max(0.0, deadline - time.monotonic()))
        for task in self._running():
            task.cancel()  # past the grace period: re-run after the lease (an interrupted call is ambiguous)
        if self._running():
            await asyncio.wait(self._running(), timeout=5)
        lanes, duties = self._tasks[: len(self.lanes)], self._tasks[len(self.lanes) :]
        _done, stuck = await asyncio.wait(lanes, timeout=IDLE_CAP * 3)  # each ends on its next iteration
        for task in [*stuck, *duties]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(StoreUnavailable):
            await self.dispatch.sign_off()  # others may settle what we left calling without waiting for us
        if self.session is not None:
            await self.session.close()
        await self.blocking.aclose()
        await self.store.close()
        log.info("worker.stopped")

    def _running(self) -> list[asyncio.Task[Any]]:
        return [t for lane in self.lanes for t in lane.running.values() if not t.done()]

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
            await self.store.ping()
        except StoreUnavailable:
            return web.json_response({"status": "unavailable", "redis": "unreachable"}, status=503)
        alive = bool(self._tasks) and all(not t.done() for t in self._tasks[: len(self.lanes)])
        body = {
            "status": "ready" if alive else "starting",
            "redis": "ok",
            "breaker": STATE_NAMES[self.dispatcher.breaker.state] if self.lanes else "closed",
        }
        return web.json_response(body, status=200 if alive and not self.stopped.is_set() else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = await render(self.metrics.registry, upkeep.refresh_gauges(self.store.upkeep, self.metrics))
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
