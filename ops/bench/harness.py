"""One benchmark run's machinery: its own Redis, the sandbox, and the processes each figure starts and stops.

The product runs with a deployment's settings: only what must be wired (Redis URL, ports, uBill URL and key,
callback key, two clients: ``bench`` without a rate limit and ``bench-prod`` with one) is set; every other
``SMSGW_*`` takes its default, and any ``SMSGW_*`` in the caller's environment is dropped so it cannot skew a
figure. ``product_root`` (diagnostic) runs the gateway and worker from another checkout (an older commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import aiohttp
from redis.asyncio import Redis

from ops.bench.loadgen import LoadResult, LoadSpec, run_load
from ops.bench.numbers import NumberSource
from ops.bench.procs import Proc, cpu_seconds, pin, spawn, wait_http
from ops.bench.virtualclock import VirtualClock
from smsgw.devtools.redis import EmbeddedRedis, free_port
from smsgw.settings import Settings, token_sha256

__all__ = ["BENCH_CLIENT_NAME", "CALLBACK_KEY", "PROD_TOKEN", "TOKEN", "UBILL_KEY", "Bench", "Posted"]

TOKEN = "bench-token-6c1f9a2e4b7d"
# Production shape: a client with a rate (high enough never to refuse: the rate script still runs).
PROD_TOKEN = "bench-prod-token-0b5e77c1d2a9"
PROD_RATE = 1_000_000.0
BENCH_CLIENT_NAME = "smsgw-bench"  # the bench's own Redis connection, left out of per-message counts
UBILL_KEY = "bench-ubill-key-3e8a"
CALLBACK_KEY = "bench-callback-key-91d0"
CLIENT = {
    "name": "bench",
    "token_sha256": token_sha256(TOKEN),
    "brands": [1],
    "default_brand": 1,
    "otp": True,
}
PROD_CLIENT = {
    "name": "bench-prod",
    "token_sha256": token_sha256(PROD_TOKEN),
    "brands": [1],
    "default_brand": 1,
    "otp": True,
    "rate": PROD_RATE,
}
SANDBOX_BALANCE = 10**11


@dataclasses.dataclass(frozen=True)
class Posted:
    status: int
    started: float  # epoch seconds when the request was sent
    answered: float  # epoch seconds when the answer's status line and headers arrived
    finished: float  # epoch seconds when the whole answer was read
    body: bytes


class Bench:
    """Owns Redis, the sandbox, the HTTP client and every process started through it (all stopped on exit)."""

    def __init__(
        self,
        *,
        quick: bool,
        pin_cpus: bool,
        keep: bool = False,
        overrides: dict[str, str] | None = None,
        appendfsync: str = "always",
        product_root: Path | None = None,
        clock: VirtualClock | None = None,
    ) -> None:
        self.quick = quick
        self.product_root = product_root
        self.keep = keep
        self.overrides = dict(overrides or {})
        self.appendfsync = appendfsync
        self.workdir = Path(tempfile.mkdtemp(prefix="smsgw-bench-"))
        self.logs = self.workdir / "logs"
        self.logs.mkdir()
        # With a virtual clock every process (Redis included) reads the wall clock through it.
        self.clock_env = clock.env if clock is not None else {}
        self.redis_server = (
            EmbeddedRedis(self.workdir / "redis", binary=clock.redis_binary, env={**os.environ, **clock.env})
            if clock is not None
            else EmbeddedRedis(self.workdir / "redis")
        )
        self.numbers = NumberSource()
        cpus = sorted(os.sched_getaffinity(0))
        # With two or more CPUs, the process under test gets CPU 0 and the load generator the last one.
        self.server_cpus: set[int] | None = {cpus[0]} if pin_cpus and len(cpus) >= 2 else None
        self.load_cpus: set[int] | None = {cpus[-1]} if pin_cpus and len(cpus) >= 2 else None
        self.procs: dict[str, Proc] = {}
        self.slow_stops: list[dict[str, Any]] = []  # processes that took over a second to stop
        self._http: aiohttp.ClientSession | None = None
        self._redis: Redis | None = None

    async def __aenter__(self) -> Self:
        self.redis_server.start()
        self._redis = Redis.from_url(
            self.redis_server.url, decode_responses=True, client_name=BENCH_CLIENT_NAME
        )
        if self.appendfsync != "always":  # a diagnostic run: EmbeddedRedis always starts with "always"
            await self._redis.config_set("appendfsync", self.appendfsync)
        # Observation only: Redis then records how long each fsync of the AOF took (LATENCY HISTORY).
        await self._redis.config_set("latency-monitor-threshold", 1)
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=120)
        )
        await self.start_sandbox()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for name in list(self.procs):
            self.stop(name)
        if self._http is not None:
            await self._http.close()
        if self._redis is not None:
            await self._redis.aclose()
        self.redis_server.stop()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "use Bench as an async context manager"
        return self._http

    @property
    def redis(self) -> Redis:
        assert self._redis is not None, "use Bench as an async context manager"
        return self._redis

    @property
    def redis_pid(self) -> int:
        return int(self.redis_server.pidfile.read_text().strip())

    # -- configuration ------------------------------------------------------------------------------------
    def product_env(self, http_port: int = 0, worker_port: int = 0) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
        env.update(
            {
                "SMSGW_REDIS_URL": self.redis_server.url,
                "SMSGW_HTTP_HOST": "127.0.0.1",
                "SMSGW_HTTP_PORT": str(http_port),
                "SMSGW_WORKER_HTTP_PORT": str(worker_port),
                "SMSGW_UBILL_BASE_URL": self.sandbox_url + "/v1",
                "SMSGW_UBILL_API_KEY": UBILL_KEY,
                "SMSGW_CALLBACK_KEY": CALLBACK_KEY,
                "SMSGW_CLIENTS": json.dumps([CLIENT, PROD_CLIENT]),
            }
        )
        env.update(self.clock_env)
        env.update(self.overrides)
        return env

    def product_settings(self) -> dict[str, Any]:
        """The settings the gateway and worker run with, as a deployment would see them (secrets left out)."""
        settings = Settings.from_env(self.product_env())
        out: dict[str, Any] = {}
        for field in dataclasses.fields(settings):
            value = getattr(settings, field.name)
            if field.name in (
                "ubill_api_key",
                "callback_key",
                "clients",
                "redis_url",
                "http_port",
                "worker_http_port",
                "ubill_base_url",
            ):
                continue
            if isinstance(value, frozenset | tuple):
                value = sorted(str(v) for v in value)
            elif not isinstance(value, str | int | float | bool | type(None)):
                value = dict(value) if hasattr(value, "items") else str(value)
            out[field.name] = value
        out["clients"] = [
            {k: v for k, v in client.items() if k != "token_sha256"} for client in (CLIENT, PROD_CLIENT)
        ]
        out["set_by_hand"] = dict(self.overrides)
        out["wired"] = [
            "SMSGW_REDIS_URL",
            "SMSGW_HTTP_HOST",
            "SMSGW_HTTP_PORT",
            "SMSGW_WORKER_HTTP_PORT",
            "SMSGW_UBILL_BASE_URL",
            "SMSGW_UBILL_API_KEY",
            "SMSGW_CALLBACK_KEY",
            "SMSGW_CLIENTS",
        ]
        return out

    # -- processes ----------------------------------------------------------------------------------------
    async def start_sandbox(self) -> Proc:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
        env.update(
            {
                "SMSGW_SANDBOX_HOST": "127.0.0.1",
                "SMSGW_SANDBOX_PORT": str(port),
                "SMSGW_SANDBOX_API_KEY": UBILL_KEY,
                "SMSGW_SANDBOX_BALANCE": str(SANDBOX_BALANCE),
                # Per-call INFO lines would cost the stand-in for uBill CPU that the worker competes for.
                "SMSGW_LOG_LEVEL": "warning",
                **self.clock_env,
            }
        )
        self.sandbox_url = f"http://127.0.0.1:{port}"
        proc = spawn("sandbox", ["-m", "smsgw", "sandbox"], env, self.logs, url=self.sandbox_url)
        self.procs["sandbox"] = proc
        await wait_http(proc, "/healthz")
        return proc

    def _product_argv(self, command: str, uvloop: bool) -> list[str]:
        if uvloop:  # the same gateway under uvloop's event loop (ops.bench.uvloop_run: no product change)
            return ["-m", "ops.bench.uvloop_run", command]
        return ["-m", "smsgw", command]

    async def start_gateway(
        self,
        name: str = "gateway",
        cpus: set[int] | None = None,
        *,
        uvloop: bool = False,
        env: dict[str, str] | None = None,
        root: Path | None = None,
    ) -> Proc:
        """``root``: the gateway of another checkout (an older commit), measured beside this one."""
        port = free_port()
        proc = spawn(
            name,
            self._product_argv("gateway", uvloop),
            {**self.product_env(http_port=port), **(env or {})},
            self.logs,
            cpus=cpus,
            url=f"http://127.0.0.1:{port}",
            cwd=root or self.product_root,
        )
        self.procs[name] = proc
        await wait_http(proc, "/readyz")
        return proc

    async def start_worker(
        self, name: str = "worker", *, env: dict[str, str] | None = None, wait: bool = True
    ) -> Proc:
        """``env``: product settings for this worker only (e.g. ``SMSGW_CONCURRENCY_TRANSACTIONAL``)."""
        port = free_port()
        proc = spawn(
            name,
            ["-m", "smsgw", "worker"],
            {**self.product_env(worker_port=port), **(env or {})},
            self.logs,
            url=f"http://127.0.0.1:{port}",
            cwd=self.product_root,
        )
        self.procs[name] = proc
        if wait:
            await wait_http(proc, "/readyz")
        return proc

    async def start_baseline_app(self, cpus: set[int] | None = None) -> Proc:
        port = free_port()
        argv = ["-m", "ops.bench.baseline_app", "--port", str(port), "--redis-url", self.redis_server.url]
        proc = spawn("baseline-app", argv, os.environ, self.logs, cpus=cpus, url=f"http://127.0.0.1:{port}")
        self.procs["baseline-app"] = proc
        await wait_http(proc, "/healthz")
        return proc

    async def start_arq(
        self, name: str, queue: str, poll_delay: float = 0.5, max_jobs: int = 10, wait: bool = True
    ) -> Proc:
        """A stock arq worker (arq's own CLI) on its own queue; ready once it wrote its health-check key."""
        env = {
            **os.environ,
            "BENCH_ARQ_REDIS": self.redis_server.url,
            "BENCH_ARQ_QUEUE": queue,
            "BENCH_ARQ_POLL_DELAY": str(poll_delay),
            "BENCH_ARQ_MAX_JOBS": str(max_jobs),
            "BENCH_ARQ_UBILL_URL": self.sandbox_url + "/v1",
            "BENCH_ARQ_UBILL_KEY": UBILL_KEY,
        }
        proc = spawn(name, ["-m", "arq", "ops.bench.arq_baseline.WorkerSettings"], env, self.logs)
        self.procs[name] = proc
        if not wait:
            return proc
        deadline = time.monotonic() + 30
        while not await self.redis.exists(f"{queue}:health-check"):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{proc.log_tail()}")
            await asyncio.sleep(0.05)
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            started = time.monotonic()
            code = proc.stop()
            took = time.monotonic() - started
            if took > 1.0:
                self.slow_stops.append(
                    {
                        "process": name,
                        "seconds": round(took, 1),
                        "exit_code": code,
                        "log_tail": proc.log_tail(600),
                    }
                )

    def stop_many(self, names: Iterable[str]) -> None:
        """SIGTERM every one first, then wait for each: their shutdown graces run side by side."""
        procs = [self.procs[name] for name in names if name in self.procs]
        for proc in procs:
            proc.terminate()
        for proc in procs:
            self.stop(proc.name)

    def cpu_times(self) -> dict[str, float]:
        """CPU seconds used so far by each running child, Redis and this process (for shares over a phase)."""
        times = {name: proc.cpu_seconds() for name, proc in self.procs.items() if proc.alive()}
        times["redis"] = cpu_seconds(self.redis_pid)
        times["bench"] = cpu_seconds(os.getpid())
        return times

    @staticmethod
    def cpu_shares(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
        """Percent of one core each process used between two ``cpu_times`` snapshots ``seconds`` apart."""
        return {
            name: round((after[name] - before[name]) / seconds * 100, 1) for name in after if name in before
        }

    def pin_redis(self, cpus: set[int] | None) -> None:
        with contextlib.suppress(OSError, ValueError):
            pin(self.redis_pid, cpus or set(os.sched_getaffinity(0)))

    # -- Redis and the sandbox ----------------------------------------------------------------------------
    async def fsync_latency(self, reset: bool = False) -> dict[str, Any]:
        """Redis' own record of slow AOF fsyncs (>= 1 ms; the worst per second) since the last reset."""
        history = await self.redis.execute_command("LATENCY", "HISTORY", "aof-fsync-always")
        if reset:
            await self.redis.execute_command("LATENCY", "RESET")
        worst = [int(ms) for _, ms in history or []]
        if not worst:
            return {"seconds_with_fsync_over_1ms": 0}
        return {
            "seconds_with_fsync_over_1ms": len(worst),
            "worst_fsync_ms_max": max(worst),
            "worst_fsync_ms_median_second": sorted(worst)[len(worst) // 2],
        }

    async def redis_counters(self) -> dict[str, int]:
        """Commands executed (scripts' inner commands included) and AOF bytes written, so far."""
        stats = await self.redis.info("commandstats")
        persistence = await self.redis.info("persistence")
        return {
            "commands": sum(int(v["calls"]) for v in stats.values() if isinstance(v, dict)),
            "aof_bytes": int(persistence.get("aof_current_size", 0)),
        }

    async def redis_cost(self, before: dict[str, int], units: int) -> dict[str, float | None]:
        """Redis commands and AOF bytes per unit (recipient or request) since ``before``; None when an AOF
        rewrite shrank the file meanwhile."""
        after = await self.redis_counters()
        out: dict[str, float | None] = {}
        for name in ("commands", "aof_bytes"):
            delta = after[name] - before[name]
            out[f"redis_{name}_per_unit"] = round(delta / max(1, units), 1) if delta >= 0 else None
        return out

    async def load(
        self,
        generator: str,
        base_url: str,
        spec: LoadSpec,
        *,
        connections: int,
        duration: float,
        pinned: bool = True,
    ) -> LoadResult:
        """One load run, its files in this bench's work folder; ``pinned``: on the load generator's own CPU
        (unpinned when the processes under load are spread over every CPU)."""
        return await run_load(
            generator,
            base_url,
            spec,
            connections=connections,
            duration=duration,
            workdir=self.workdir,
            cpus=self.load_cpus if pinned else None,
        )

    async def flush(self) -> None:
        await self.redis.flushall()

    async def sandbox_patch(self, **knobs: object) -> None:
        async with self.http.patch(f"{self.sandbox_url}/_sandbox/config", json=knobs) as response:
            if response.status != 200:
                raise RuntimeError(f"sandbox config: {response.status} {await response.text()}")

    async def sandbox_clear(self) -> None:
        async with self.http.delete(f"{self.sandbox_url}/_sandbox/sends") as response:
            await response.read()

    async def sandbox_sends(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.sandbox_url}/_sandbox/sends") as response:
            sends: list[dict[str, Any]] = (await response.json())["sends"]
            return sends

    async def sandbox_numbers(self) -> int:
        """How many numbers the sandbox accepted so far (every number counted once per call)."""
        async with self.http.get(f"{self.sandbox_url}/_sandbox/counts") as response:
            counts: dict[str, int] = (await response.json())["numbers"]
            return sum(counts.values())

    async def reset(self) -> None:
        """Empty Redis and the sandbox's memory, latency back to 0, callbacks off."""
        await self.flush()
        await self.sandbox_clear()
        await self.sandbox_patch(latency=0.0, callback_url=None)

    # -- the API ------------------------------------------------------------------------------------------
    async def post(self, body: dict[str, Any]) -> Posted:
        data = json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        started = time.time()
        async with self.http.post(
            self.procs["gateway"].url + "/v1/messages", data=data, headers=headers
        ) as response:
            answered = time.time()
            raw = await response.read()
            return Posted(response.status, started, answered, time.time(), raw)

    async def post_many(self, bodies: Iterable[dict[str, Any]], concurrency: int = 8) -> list[Posted]:
        """POST every body with at most ``concurrency`` in flight; raises on any non-202 answer."""
        semaphore = asyncio.Semaphore(concurrency)

        async def one(body: dict[str, Any]) -> Posted:
            async with semaphore:
                posted = await self.post(body)
            if posted.status != 202:
                raise RuntimeError(f"gateway answered {posted.status}: {posted.body[:300]!r}")
            return posted

        return list(await asyncio.gather(*(one(b) for b in bodies)))
