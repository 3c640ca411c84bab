"""The system under test, started and owned by the soak: Redis (and Sentinels), the proxy, the balancer, the
sandbox, two gateways and two workers, each a real process the fault injector may kill and restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any, Final

import aiohttp

from ops.soak.config import Options, product_env, sandbox_env
from ops.soak.nodes import MASTER_NAME, Topology
from ops.soak.procs import Slot
from ops.soak.proxy import Balancer, RedisProxy

__all__ = ["Stage"]

GATEWAYS: Final = 2
WORKERS: Final = 2


class Stage:
    def __init__(self, options: Options, work_dir: Path) -> None:
        self.options = options
        self.work_dir = work_dir
        self.logs = work_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.topology = Topology(options.topology, work_dir)
        self.proxy: RedisProxy | None = None
        self.gateways: list[Slot] = []
        self.workers: list[Slot] = []
        self.balancer = Balancer(lambda: [g.port for g in self.gateways])
        self.sandbox: Slot | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "Stage.start() first"
        return self._http

    @property
    def sandbox_url(self) -> str:
        assert self.sandbox is not None
        return self.sandbox.url

    def redis_env(self) -> dict[str, str]:
        if self.options.topology == "sentinel":
            sentinels = ",".join(f"{h}:{p}" for h, p in self.topology.sentinel_addresses())
            return {"SMSGW_REDIS_SENTINELS": sentinels, "SMSGW_REDIS_SENTINEL_MASTER": MASTER_NAME}
        assert self.proxy is not None
        return {"SMSGW_REDIS_URL": f"redis://127.0.0.1:{self.proxy.port}/0"}

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        await self.topology.start()
        if self.options.topology == "single":
            self.proxy = RedisProxy(self.topology.nodes[0].port)
            await self.proxy.start()
        await self.balancer.start()
        self.sandbox = Slot("sandbox", "sandbox", {}, self.logs)
        self.sandbox.env = sandbox_env(
            self.sandbox.port, f"{self.balancer.url}/callbacks/ubill", self.options.seed
        )
        self.sandbox.start({})
        env = {**product_env(self.redis_env(), f"{self.sandbox.url}/v1"), **dict(self.options.overrides)}
        self.gateways = [Slot(f"gateway-{i}", "gateway", env, self.logs) for i in range(GATEWAYS)]
        self.workers = [Slot(f"worker-{i}", "worker", env, self.logs) for i in range(WORKERS)]
        for i in range(GATEWAYS):
            self.start_gateway(i)
        for i in range(WORKERS):
            self.start_worker(i)
        waits = [self.sandbox.wait_http("/healthz")]
        waits += [g.wait_http("/readyz", 60) for g in self.gateways]
        waits += [w.wait_http("/readyz", 60) for w in self.workers]
        await asyncio.gather(*waits)

    def start_gateway(self, index: int) -> None:
        slot = self.gateways[index]
        slot.start({"SMSGW_HTTP_PORT": str(slot.port), "SMSGW_WORKER_HTTP_PORT": "0"})

    def start_worker(self, index: int) -> None:
        slot = self.workers[index]
        slot.start({"SMSGW_WORKER_HTTP_PORT": str(slot.port), "SMSGW_HTTP_PORT": "0"})

    async def sandbox_patch(self, **knobs: Any) -> None:
        async with self.http.patch(f"{self.sandbox_url}/_sandbox/config", json=knobs) as response:
            if response.status != 200:
                raise RuntimeError(f"sandbox config {knobs}: {response.status} {await response.text()}")

    async def sandbox_get(self, path: str) -> Any:
        async with self.http.get(
            f"{self.sandbox_url}{path}", timeout=aiohttp.ClientTimeout(total=120)
        ) as response:
            response.raise_for_status()
            return await response.json()

    def dead_processes(self) -> list[str]:
        """Product processes that exited by themselves (the injector restarts what it kills)."""
        return [s.name for s in (*self.gateways, *self.workers) if not s.alive()]

    async def stop(self) -> None:
        started = time.monotonic()
        for slot in (*self.workers, *self.gateways):
            slot.signal(15)
        for slot in (*self.workers, *self.gateways):
            await slot.wait_exit(max(1.0, 20 - (time.monotonic() - started)))
        if self.sandbox is not None:
            self.sandbox.stop()
        await self.balancer.close()
        if self.proxy is not None:
            await self.proxy.close()
        self.topology.stop()
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.close()
