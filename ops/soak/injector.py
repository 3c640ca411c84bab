"""Carries out the fault schedule against the stage, and writes down when each fault was really active.

Each timeline runs its faults one after the other (a fault is undone before the next of its timeline starts);
the timelines run side by side. Redis faults are verified where the product would see an error reply: the
injector writes a probe key and records the error Redis gave (``OOM``, ``MISCONF``, ``READONLY``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ops.bench.numbers import NumberSource
from ops.soak.config import CALLBACK_KEY, FOREIGN_MARK, UBILL_KEY
from ops.soak.nodes import MASTER_NAME, RedisNode
from ops.soak.records import Answer, FaultWindow, Journal
from ops.soak.schedule import CALLBACKS, PROCESSES, UBILL, Fault
from ops.soak.stage import Stage
from ops.soak.workload import Workload
from smsgw.ubill import DATE_FORMAT, format_local

__all__ = ["Injector"]

FOREIGN_NUMBERS_START: Final = 20_000_000  # far from the workload's numbers
PROBE_KEY: Final = "soak:probe"
_HEALTHY_SANDBOX: Final = {
    "error_rate": 0.0,
    "rate_limited_rate": 0.0,
    "stall_rate": 0.0,
    "drop_rate": 0.0,
    "accept_error_rate": 0.0,
    "duplicate_rate": 0.0,
    "reorder_rate": 0.0,
    "callback_delay": 0.2,
}


def _timeline_of(kind: str) -> str:
    for name, kinds in (("processes", PROCESSES), ("ubill", UBILL), ("callbacks", CALLBACKS)):
        if kind in kinds:
            return name
    return "redis"


class Injector:
    def __init__(self, stage: Stage, workload: Workload, journal: Journal, schedule: list[Fault]) -> None:
        self.stage = stage
        self.workload = workload
        self.journal = journal
        self.schedule = schedule
        self._rng = random.Random(f"foreign-{journal.seed}")
        self._foreign_numbers = NumberSource(FOREIGN_NUMBERS_START)
        self._held_port: socket.socket | None = None
        self.busy: set[str] = set()  # processes a fault is killing or restarting right now

    async def run(self, started: float) -> None:
        """Run every timeline; ``started`` is the workload's ``time.monotonic()`` origin."""
        timelines: dict[str, list[Fault]] = {}
        for fault in self.schedule:
            timelines.setdefault(_timeline_of(fault.kind), []).append(fault)
        await asyncio.gather(*(self._timeline(faults, started) for faults in timelines.values()))

    async def _timeline(self, faults: list[Fault], started: float) -> None:
        for fault in faults:
            wait = started + fault.at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.apply(fault)

    async def apply(self, fault: Fault) -> None:
        window = FaultWindow(fault.kind, time.time(), 0.0, dict(fault.params))
        action = self._actions().get(fault.kind)
        try:
            if action is None:
                raise ValueError(f"no such fault kind {fault.kind!r}")
            await action(fault, window.detail)
        except Exception as exc:  # a fault that could not be injected is reported, not fatal
            window.detail["error"] = f"{type(exc).__name__}: {exc}"
        window.ended = time.time()
        self.journal.faults.append(window)

    def _actions(self) -> dict[str, Callable[[Fault, dict[str, Any]], Awaitable[None]]]:
        return {
            "redis-kill": self._redis_kill,
            "primary-kill": self._primary_kill,
            "redis-stop": self._redis_stop,
            "proxy-delay": self._proxy_delay,
            "proxy-cut": self._proxy_cut,
            "proxy-blackhole": self._proxy_blackhole,
            "redis-oom": self._redis_oom,
            "redis-misconf": self._redis_misconf,
            "redis-readonly": self._redis_readonly,
            "sentinel-failover": self._sentinel_failover,
            "worker-kill": self._worker_signal,
            "worker-term": self._worker_signal,
            "gateway-kill": self._gateway_kill,
            "callback-early": self._callback_early,
            "callback-foreign": self._callback_foreign,
            **dict.fromkeys((*UBILL, "callback-duplicate", "callback-reorder"), self._sandbox_knob),
        }

    # -- Redis ---------------------------------------------------------------------------------------------
    async def _redis_kill(self, fault: Fault, detail: dict[str, Any]) -> None:
        node = await self.stage.topology.primary()
        node.kill()
        detail["node"] = node.name
        await asyncio.sleep(fault.duration)
        node.start()
        await node.wait_ready(30)

    async def _primary_kill(self, fault: Fault, detail: dict[str, Any]) -> None:
        node = await self.stage.topology.primary()
        node.kill()
        detail["node"] = node.name
        await asyncio.sleep(fault.duration)
        detail["new_primary"] = await self._wait_new_primary(node, 15.0)
        node.start()
        await node.wait_ready(30)

    async def _wait_new_primary(self, old: RedisNode, limit: float) -> str | None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            current = await self.stage.topology.primary()
            if current is not old:
                return current.name
            await asyncio.sleep(0.2)
        return None

    async def _redis_stop(self, fault: Fault, detail: dict[str, Any]) -> None:
        node = await self.stage.topology.primary()
        detail["node"] = node.name
        node.signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(fault.duration)
        finally:
            node.signal(signal.SIGCONT)

    async def _proxy_delay(self, fault: Fault, detail: dict[str, Any]) -> None:
        proxy = self._proxy()
        proxy.delay = float(fault.params["delay"])
        try:
            await asyncio.sleep(fault.duration)
        finally:
            proxy.heal()

    async def _proxy_cut(self, fault: Fault, detail: dict[str, Any]) -> None:
        proxy = self._proxy()
        proxy.refusing = True
        detail["cut"] = proxy.cut()
        try:
            await asyncio.sleep(fault.duration)
        finally:
            proxy.heal()

    async def _proxy_blackhole(self, fault: Fault, detail: dict[str, Any]) -> None:
        proxy = self._proxy()
        proxy.blackhole()
        detail["connections"] = proxy.live_connections
        try:
            await asyncio.sleep(fault.duration)
        finally:
            proxy.heal()

    def _proxy(self) -> Any:
        if self.stage.proxy is None:
            raise RuntimeError("no proxy in this topology")
        return self.stage.proxy

    async def _probe(self, client: Redis) -> str:
        """Write a probe key (it expires); the error Redis answers, or ``ok``."""
        try:
            await client.set(PROBE_KEY, "1", ex=60)
        except RedisError as exc:
            return type(exc).__name__
        return "ok"

    async def _redis_oom(self, fault: Fault, detail: dict[str, Any]) -> None:
        node = await self.stage.topology.primary()
        async with node.admin() as client:
            used = int((await client.info("memory"))["used_memory"])
            await client.config_set("maxmemory-policy", "noeviction")
            await client.config_set("maxmemory", max(1, used // 2))
            detail["probe"] = await self._probe(client)
            try:
                await asyncio.sleep(fault.duration)
            finally:
                await client.config_set("maxmemory", 0)

    async def _redis_misconf(self, fault: Fault, detail: dict[str, Any]) -> None:
        """A snapshot that cannot be written (its directory is gone) makes Redis refuse writes: MISCONF."""
        node = await self.stage.topology.primary()
        gone = self.stage.work_dir / f"misconf-{len(self.journal.faults)}"
        gone.mkdir()
        async with node.admin() as client:
            home = (await client.config_get("dir"))["dir"]
            await client.config_set("save", "3600 1")
            await client.config_set("dir", str(gone))
            gone.rmdir()
            try:
                await client.bgsave()
                for _ in range(50):
                    persistence = await client.info("persistence")
                    if not persistence.get("rdb_bgsave_in_progress"):
                        break
                    await asyncio.sleep(0.02)
                detail["probe"] = await self._probe(client)
                await asyncio.sleep(fault.duration)
            finally:
                await client.config_set("dir", home)
                await client.config_set("save", "")

    async def _redis_readonly(self, fault: Fault, detail: dict[str, Any]) -> None:
        """Redis turned into a replica of a master that never answers (a port we hold, not listening)."""
        node = await self.stage.topology.primary()
        if self._held_port is None:
            self._held_port = socket.socket()
            self._held_port.bind(("127.0.0.1", 0))
        port = self._held_port.getsockname()[1]
        async with node.admin() as client:
            await client.execute_command("REPLICAOF", "127.0.0.1", str(port))
            try:
                detail["probe"] = await self._probe(client)
                await asyncio.sleep(fault.duration)
            finally:
                await client.execute_command("REPLICAOF", "NO", "ONE")

    async def _sentinel_failover(self, fault: Fault, detail: dict[str, Any]) -> None:
        old = await self.stage.topology.primary()
        host, port = self.stage.topology.sentinel_addresses()[0]
        async with Redis(host=host, port=port, decode_responses=True, socket_timeout=2) as sentinel:
            await sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        begun = time.monotonic()
        detail["old_primary"] = old.name
        detail["new_primary"] = await self._wait_new_primary(old, fault.duration + 10)
        detail["failover_seconds"] = round(time.monotonic() - begun, 2)
        await asyncio.sleep(max(0.0, fault.duration - (time.monotonic() - begun)))

    # -- processes -----------------------------------------------------------------------------------------
    async def _worker_signal(self, fault: Fault, detail: dict[str, Any]) -> None:
        index = int(fault.params["target"])
        slot = self.stage.workers[index]
        sig = signal.SIGKILL if fault.kind == "worker-kill" else signal.SIGTERM
        detail["worker"] = slot.name
        self.busy.add(slot.name)
        try:
            sent = time.monotonic()
            slot.signal(sig)
            detail["exit_code"] = await slot.wait_exit(15)
            detail["exit_seconds"] = round(time.monotonic() - sent, 2)
            await asyncio.sleep(fault.duration)
            self.stage.start_worker(index)
        finally:
            self.busy.discard(slot.name)

    async def _gateway_kill(self, fault: Fault, detail: dict[str, Any]) -> None:
        index = int(fault.params["target"])
        slot = self.stage.gateways[index]
        detail["gateway"] = slot.name
        self.busy.add(slot.name)
        try:
            slot.signal(signal.SIGKILL)
            await slot.wait_exit(5)
            await asyncio.sleep(fault.duration)
            self.stage.start_gateway(index)
        finally:
            self.busy.discard(slot.name)

    # -- uBill and its callbacks ---------------------------------------------------------------------------
    async def _sandbox_knob(self, fault: Fault, detail: dict[str, Any]) -> None:
        await self.stage.sandbox_patch(**fault.params)
        try:
            await asyncio.sleep(fault.duration)
        finally:
            await self.stage.sandbox_patch(**{k: _HEALTHY_SANDBOX[k] for k in fault.params})

    async def _callback_early(self, fault: Fault, detail: dict[str, Any]) -> None:
        """Callbacks sent the instant uBill accepts, racing the worker's record of the smsID."""
        await self.stage.sandbox_patch(callback_delay=0.0)
        try:
            await asyncio.sleep(fault.duration)
        finally:
            await self.stage.sandbox_patch(callback_delay=_HEALTHY_SANDBOX["callback_delay"])

    async def _callback_foreign(self, fault: Fault, detail: dict[str, Any]) -> None:
        """Another integration on the same uBill account sends (the sandbox calls our gateway back with
        smsIDs we never sent), and hand-made callbacks with random smsIDs hit numbers we are sending to."""
        per_second = float(fault.params.get("per_second", 4))
        deadline = time.monotonic() + fault.duration
        sent = made = 0
        while time.monotonic() < deadline:
            if self._rng.random() < 0.5:
                sent += await self._foreign_send()
            else:
                made += await self._foreign_callback()
            await asyncio.sleep(self._rng.expovariate(per_second))
        detail.update(foreign_sends=sent, hand_made_callbacks=made)

    def _ours_or_foreign(self) -> str:
        recent = self.workload.recent_numbers()
        if recent and self._rng.random() < 0.7:
            return self._rng.choice(recent)
        return self._foreign_numbers.take(1)[0]

    async def _foreign_send(self) -> int:
        numbers = self._foreign_numbers.take(1)
        if self._rng.random() < 0.6:
            numbers.append(self._ours_or_foreign())
        params = {
            "key": UBILL_KEY,
            "brandID": "1",
            "numbers": ",".join(numbers),
            "text": f"{FOREIGN_MARK} hello",
        }
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, ValueError):
            async with self.stage.http.get(
                f"{self.stage.sandbox_url}/v1/sms/send", params=params, timeout=aiohttp.ClientTimeout(total=3)
            ) as response:
                body = await response.json(content_type=None)
                if isinstance(body, dict) and body.get("statusID") == 0:
                    self.journal.foreign_sms_ids.add(int(body["smsID"]))
                    return 1
        return 0

    async def _foreign_callback(self) -> int:
        params = {
            "key": CALLBACK_KEY,
            "smsID": str(self._rng.randrange(100_000_000, 200_000_000)),
            "number": self._ours_or_foreign(),
            "statusID": str(self._rng.choice((0, 1, 1, 2, 4))),
            "date": format_local(datetime.now(UTC), DATE_FORMAT),
        }
        answer = Answer("GET /callbacks/ubill (hand-made, foreign smsID)", time.time(), None)
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with self.stage.http.get(
                f"{self.stage.balancer.url}/callbacks/ubill",
                params=params,
                timeout=aiohttp.ClientTimeout(total=3),
            ) as response:
                answer.status = response.status
                answer.retry_after = response.headers.get("Retry-After")
                await response.read()
        answer.at = time.time()
        self.journal.answers.append(answer)
        return 1

    async def heal_all(self) -> None:
        """Undo anything a fault might have left behind (the settling period must be fault-free)."""
        if self.stage.proxy is not None:
            self.stage.proxy.heal()
        with contextlib.suppress(Exception):
            await self.stage.sandbox_patch(**_HEALTHY_SANDBOX)
        for node in self.stage.topology.nodes:
            if node.stopped:
                node.signal(signal.SIGCONT)
        for index, slot in enumerate(self.stage.workers):
            if not slot.alive():
                self.stage.start_worker(index)
        for index, slot in enumerate(self.stage.gateways):
            if not slot.alive():
                self.stage.start_gateway(index)
        if self._held_port is not None:
            self._held_port.close()
            self._held_port = None
