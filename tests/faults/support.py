"""Helpers of the issue-9 fault tests: Redis faults an operator meets, processes, callbacks, Redis sizes.

Redis is driven only through what an operator can do to it: signals (SIGSTOP/SIGCONT), ``CONFIG SET``,
``REPLICAOF``, ``BGSAVE``. Each fault is an ``inject``/``relieve`` pair over an admin connection.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from smsgw.devtools.redis import EmbeddedRedis, free_port
from smsgw.ubill import format_local
from tests.harness import CALLBACK_KEY, Stack, eventually, spawn

__all__ = [
    "FAULT_SIGN",
    "PROTECTED_CONFIGS",
    "REDIS_ERROR_FAULTS",
    "admin",
    "callback",
    "log_text",
    "pause",
    "probe_write",
    "resume",
    "sizes_without_ttl",
    "within",
    "worker",
]

# What a write's error says under each of REDIS_ERROR_FAULTS (``probe_write``: the fault took).
FAULT_SIGN = {"oom": "maxmemory", "misconf": "MISCONF", "readonly": "read only replica"}
PROTECTED_CONFIGS = ("--enable-protected-configs", "yes")  # CONFIG SET dir, for the MISCONF fault


def admin(server: EmbeddedRedis) -> Redis:
    client: Redis = Redis.from_url(server.url, decode_responses=True)
    return client


def _pid(server: EmbeddedRedis) -> int:
    return int(server.pidfile.read_text().strip())


def pause(server: EmbeddedRedis) -> None:
    """SIGSTOP: Redis is there (connections stay open) but answers nothing, as in a long stall."""
    os.kill(_pid(server), signal.SIGSTOP)


def resume(server: EmbeddedRedis) -> None:
    os.kill(_pid(server), signal.SIGCONT)


def worker(
    stack: Stack, tmp_path: Path, name: str = "worker", **overrides: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """``smsgw worker`` as a real process with the stack's settings (plus ``overrides``), and its log."""
    log = tmp_path / f"{name}.log"
    return spawn("worker", {**stack.env, **overrides}, log), log


def log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def callback(stack: Stack, sms_id: str, number: str, status_id: int = 1) -> int:
    """uBill's delivery callback, as uBill sends it; returns the HTTP status."""
    params = {
        "key": CALLBACK_KEY,
        "smsID": sms_id,
        "number": number,
        "statusID": str(status_id),
        "date": format_local(datetime.now(UTC)),
    }
    async with stack.http.get(f"{stack.url}/callbacks/ubill", params=params) as response:
        await response.read()
        return response.status


# --- Redis answering errors instead of refusing connections -------------------------------------------


async def _oom(r: Redis, _data_dir: Path) -> None:
    await r.config_set("maxmemory-policy", "noeviction")
    await r.config_set("maxmemory", "1")  # every write that may grow memory: -OOM


async def _oom_relieve(r: Redis, _data_dir: Path) -> None:
    await r.config_set("maxmemory", "0")


async def _misconf(r: Redis, data_dir: Path) -> None:
    """A failed RDB save with a save point configured: writes answer -MISCONF (as after a failed disk)."""
    gone = data_dir / "gone"
    gone.mkdir(exist_ok=True)
    await r.config_set("save", "3600 1")
    await r.config_set("dir", str(gone))
    gone.rmdir()
    await r.bgsave()

    async def failed() -> bool:
        return str((await r.info("persistence"))["rdb_last_bgsave_status"]) == "err"

    await eventually(failed, timeout=10)


async def _misconf_relieve(r: Redis, data_dir: Path) -> None:
    await r.config_set("save", "")
    await r.config_set("dir", str(data_dir))


async def _readonly(r: Redis, _data_dir: Path) -> None:
    """A failover turned this Redis into a replica (of a master that is gone): writes answer -READONLY."""
    await r.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))


async def _readonly_relieve(r: Redis, _data_dir: Path) -> None:
    await r.execute_command("REPLICAOF", "NO", "ONE")


Fault = Callable[[Redis, Path], Awaitable[None]]
REDIS_ERROR_FAULTS: Mapping[str, tuple[Fault, Fault]] = {
    "oom": (_oom, _oom_relieve),
    "misconf": (_misconf, _misconf_relieve),
    "readonly": (_readonly, _readonly_relieve),
}


async def probe_write(r: Redis) -> str:
    """What Redis answers to a write now: 'OK' or the error (redis-py's class and Redis's message)."""
    try:
        await r.set("fault-probe", "1", px=1000)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "OK"


# --- Sizes of what never expires ----------------------------------------------------------------------


async def sizes_without_ttl(r: Redis) -> dict[str, tuple[str, int]]:
    """Every key without a TTL: its type and its number of elements (1 for a string)."""
    out: dict[str, tuple[str, int]] = {}
    async for key in r.scan_iter(count=1000):
        if await r.ttl(key) != -1:
            continue
        kind = await r.type(key)
        size: Any = {
            "zset": r.zcard,
            "set": r.scard,
            "hash": r.hlen,
            "list": r.llen,
            "stream": r.xlen,
        }.get(kind)
        out[key] = (kind, int(await size(key)) if size else 1)
    return out


async def within(check: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.1) -> bool:
    """Like ``eventually`` but answers False instead of failing (the caller asserts with its own message)."""
    try:
        await eventually(check, timeout=timeout, every=every)
    except AssertionError:
        return False
    return True
