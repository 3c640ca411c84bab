"""Real parts for tests: the gateway, the worker and the uBill sandbox on real sockets, over a real Redis.

``Stack`` runs them in the test's event loop (gateway and sandbox on their own ports, the worker as a task);
``spawn`` runs ``smsgw <command>`` as a real process for the fault tests that kill it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from smsgw.gateway.app import create_app
from smsgw.sandbox import SandboxConfig
from smsgw.sandbox import create_app as create_sandbox
from smsgw.settings import Settings, token_sha256
from smsgw.store import keys
from smsgw.store.records import MessageView
from smsgw.worker.main import WorkerProcess

TOKENS = {
    "auth": "tok-auth-4f1c0d2b9e8a7765",
    "shop": "tok-shop-1a2b3c4d5e6f7788",
    "ops": "tok-ops-99aa88bb77cc66dd",
    "limited": "tok-limited-0011223344556677",
}
CALLBACK_KEY = "cb-key-5b7e0f3a2d1c9e8b"
UBILL_KEY = "ubill-key-7d6c5b4a39281706"
CLIENTS = [
    {
        "name": "auth-service",
        "token_sha256": token_sha256(TOKENS["auth"]),
        "brands": [1, 2],
        "default_brand": 1,
        "otp": True,
    },
    {"name": "shop", "token_sha256": token_sha256(TOKENS["shop"]), "brands": [2], "default_brand": 2},
    {
        "name": "ops",
        "token_sha256": token_sha256(TOKENS["ops"]),
        "brands": [1],
        "default_brand": 1,
        "otp": True,
        "admin": True,
    },
    {
        "name": "limited",
        "token_sha256": token_sha256(TOKENS["limited"]),
        "brands": [1],
        "default_brand": 1,
        "rate": 2,
    },
]
ROOT = Path(__file__).resolve().parent.parent


async def stored(redis: Redis, message_id: str) -> MessageView:
    """A message as the store holds it (the store's own typed view: tests read no raw fields either)."""
    fields: dict[str, str] = await redis.hgetall(keys.message(message_id))
    assert fields, f"message {message_id} is not stored"
    return MessageView.parse(message_id, fields)


def base_env(redis_url: str, ubill_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "SMSGW_REDIS_URL": redis_url,
        "SMSGW_HTTP_HOST": "127.0.0.1",
        "SMSGW_HTTP_PORT": "0",
        "SMSGW_WORKER_HTTP_PORT": "0",
        "SMSGW_UBILL_BASE_URL": ubill_url,
        "SMSGW_UBILL_API_KEY": UBILL_KEY,
        "SMSGW_CALLBACK_KEY": CALLBACK_KEY,
        "SMSGW_CLIENTS": json.dumps(CLIENTS),
        "SMSGW_UBILL_TIMEOUT": "2",
        "SMSGW_RETRY_BASE": "0.05",
        "SMSGW_RETRY_CAP": "0.5",
        "SMSGW_BREAKER_COOLDOWN": "0.5",
        "SMSGW_JOB_LEASE": "2",
        "SMSGW_BALANCE_INTERVAL": "0",
        "SMSGW_BRANDS_INTERVAL": "0",  # uBill calls a test counts are sends; brand tests turn it on
    }
    env.update(overrides)
    return env


def sandbox_config(**knobs: str) -> SandboxConfig:
    env = {
        "SMSGW_SANDBOX_API_KEY": UBILL_KEY,
        "SMSGW_SANDBOX_CALLBACK_DELAY": "0.05",
        "SMSGW_SANDBOX_SEED": "7",
    }
    env.update({f"SMSGW_SANDBOX_{k.upper()}": v for k, v in knobs.items()})
    return SandboxConfig.from_env(env)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


class Stack:
    """Sandbox + gateway + worker over one Redis; ``http`` is a client session for the test."""

    def __init__(
        self,
        redis_url: str,
        env: Mapping[str, str] | None = None,
        sandbox: Mapping[str, str] | None = None,
        worker: bool = True,
    ) -> None:
        self.redis_url = redis_url
        self.env_overrides = dict(env or {})
        self.sandbox_knobs = dict(sandbox or {})
        self.with_worker = worker
        self.runners: list[web.AppRunner] = []
        self.worker: WorkerProcess | None = None
        self.worker_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Stack:
        runner, self.sandbox_url = await serve(create_sandbox(sandbox_config(**self.sandbox_knobs)))
        self.runners.append(runner)
        self.env = base_env(self.redis_url, self.sandbox_url + "/v1", **self.env_overrides)
        self.settings = Settings.from_env(self.env)
        runner, self.url = await serve(create_app(self.settings))
        self.runners.append(runner)
        self.http = aiohttp.ClientSession()
        await self.sandbox_patch(
            {"callback_url": f"{self.url}/callbacks/ubill", "callback_key": CALLBACK_KEY}
        )
        if self.with_worker:
            await self.start_worker()
        return self

    async def start_worker(self) -> None:
        self.worker = WorkerProcess(self.settings)
        self.worker_task = asyncio.create_task(self.worker.serve())

    async def stop_worker(self) -> None:
        if self.worker is not None and self.worker_task is not None:
            self.worker.stop()
            await asyncio.wait_for(self.worker_task, 30)
            self.worker, self.worker_task = None, None

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_worker()
        await self.http.close()
        for runner in reversed(self.runners):
            await runner.cleanup()

    def auth(self, who: str = "auth") -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[who]}"}

    async def send(
        self, body: Any, who: str = "auth", headers: Mapping[str, str] | None = None, expect: int | None = 202
    ) -> dict[str, Any]:
        async with self.http.post(
            f"{self.url}/v1/messages", json=body, headers={**self.auth(who), **(headers or {})}
        ) as response:
            data: dict[str, Any] = await response.json(content_type=None)
            if expect is not None:
                assert response.status == expect, (response.status, data)
            return data

    async def get(self, message_id: str, who: str = "auth") -> dict[str, Any]:
        async with self.http.get(f"{self.url}/v1/messages/{message_id}", headers=self.auth(who)) as response:
            assert response.status == 200, await response.text()
            data: dict[str, Any] = await response.json()
            return data

    async def wait_for(
        self,
        message_id: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float = 15.0,
        who: str = "auth",
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.get(message_id, who)
            if done(message):
                return message
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; last state {json.dumps(message)[:2000]}")
            await asyncio.sleep(0.05)

    async def wait_status(self, message_id: str, *statuses: str, timeout: float = 15.0) -> dict[str, Any]:
        return await self.wait_for(
            message_id, lambda m: all(r["status"] in statuses for r in m["recipients"]), timeout
        )

    async def sandbox_patch(self, knobs: dict[str, Any]) -> None:
        async with self.http.patch(f"{self.sandbox_url}/_sandbox/config", json=knobs) as response:
            assert response.status == 200, await response.text()

    async def sandbox_sends(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.sandbox_url}/_sandbox/sends") as response:
            sends: list[dict[str, Any]] = (await response.json())["sends"]
            return sends

    async def sandbox_counts(self) -> dict[str, int]:
        async with self.http.get(f"{self.sandbox_url}/_sandbox/counts") as response:
            numbers: dict[str, int] = (await response.json())["numbers"]
            return numbers


def spawn(command: str, env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``smsgw <command>`` as a real process (its own session, so a test can SIGKILL it alone)."""
    full_env = {**os.environ, **env, "SMSGW_LOG_FORMAT": "json"}
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "smsgw", command],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
    )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


async def astop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """``stop`` without blocking the event loop (the in-process sandbox must keep answering meanwhile)."""
    return await asyncio.to_thread(stop, process, sig, timeout)


async def answers_200(url: str) -> bool:
    """For ``eventually``: the process behind ``url`` is up and ready."""
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 15.0, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)
