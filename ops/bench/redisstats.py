"""What Redis did during a window: commands (scripts' inner commands included), top-level commands by script,
AOF bytes, socket reads, CPU. The bench's own connection (``BENCH_CLIENT_NAME``) is left out.

How each count is taken:

- **commands**: ``INFO commandstats`` calls before and after (Redis counts a script's inner commands there,
  each as its own command), minus the bench's own commands in the window.
- **top-level commands and per-script counts**: ``SLOWLOG`` with ``slowlog-log-slower-than 0`` logs every
  command; Redis 7 logs a script's inner commands as client ``?:0`` right before the script's own
  ``EVALSHA`` entry (scripts are atomic), so each run of inner entries belongs to the next ``EVALSHA``. A
  ``BLPOP`` that times out is not logged: blocking pops are counted from ``commandstats`` (no script blocks).
  Top-level commands are an upper bound on round trips: a pipeline sends several in one write.
- **socket reads**: ``syscr`` of ``/proc/<redis>/io``: Redis reads a client's socket once per readable event,
  so a pipelined batch that arrives together is one read: a closer measure of round trips.
- **AOF bytes**: growth of the files in Redis' ``appenddirname`` folder; automatic AOF rewrites are paused
  for the window (a rewrite would shrink them) and ``aof_rewrites`` is checked.
- **CPU**: ``/proc/<redis>/stat`` utime + stime (the scheduler's count via ``procs.cpu_seconds``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from ops.bench.procs import cpu_seconds

__all__ = ["RedisWindow", "aof_bytes", "script_names", "socket_reads"]

LUA_CLIENT = "?:0"
BLOCKING = {"BLPOP", "BRPOP", "BLMOVE", "BZPOPMIN", "BZPOPMAX", "XREAD", "XREADGROUP", "BLMPOP", "BZMPOP"}


def aof_bytes(data_dir: Path) -> int:
    """Bytes of every AOF file (Redis 7: base + incremental files in ``appendonlydir``)."""
    return sum(p.stat().st_size for p in data_dir.rglob("*.aof*") if p.is_file())


def _incr_file(data_dir: Path) -> Path | None:
    """The AOF file Redis appends to now (Redis 7: the newest ``*.incr.aof``; older: ``appendonly.aof``)."""
    files = sorted(data_dir.rglob("*.incr.aof"), key=lambda p: p.stat().st_mtime) or sorted(
        data_dir.rglob("appendonly.aof")
    )
    return files[-1] if files else None


def aof_by_command(path: Path, offset: int) -> dict[str, int]:
    """Bytes of the AOF from ``offset`` on, by command (RESP arrays; MULTI/EXEC wrappers counted as such)."""
    data = path.read_bytes()[offset:]
    out: Counter[str] = Counter()
    i = 0
    while i < len(data) and data[i : i + 1] == b"*":
        start = i
        end = data.index(b"\r\n", i)
        count = int(data[i + 1 : end])
        i = end + 2
        name = ""
        for n in range(count):
            end = data.index(b"\r\n", i)
            length = int(data[i + 1 : end])
            if n == 0:
                name = data[end + 2 : end + 2 + length].decode(errors="replace").upper()
            i = end + 2 + length + 2
        out[name] += i - start
    return dict(out)


def user_system(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (``/proc/<pid>/stat``, clock ticks)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def socket_reads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    return 0


def script_names() -> dict[str, str]:
    """sha1 → name of this checkout's Lua scripts (store and verification), for per-script counts."""
    names: dict[str, str] = {}
    try:
        from smsgw.store.scripts import Scripts, source  # noqa: PLC0415 - the product under test may be older

        for name in Scripts.__dataclass_fields__:
            names[hashlib.sha1(source(name).encode()).hexdigest()] = name
    except ImportError:
        pass
    return names


async def _commandstats(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {
        name.removeprefix("cmdstat_").upper(): int(v["calls"])
        for name, v in stats.items()
        if isinstance(v, dict)
    }


@dataclass
class RedisWindow:
    """Counters around a window; ``slowlog`` on to split top-level from inner commands (costs Redis ~1 µs per
    command, so a window that measures Redis CPU leaves it off)."""

    redis: Redis
    pid: int
    data_dir: Path
    bench_client: str
    slowlog: bool = False
    slowlog_len: int = 200_000
    _before: dict[str, Any] = field(default_factory=dict)
    _aof: Path | None = None
    _aof_offset: int = 0
    _saved: dict[str, str] = field(default_factory=dict)

    async def _snapshot(self) -> dict[str, Any]:
        persistence = await self.redis.info("persistence")
        return {
            "time": time.monotonic(),
            "commandstats": await _commandstats(self.redis),
            "aof_bytes": aof_bytes(self.data_dir),
            "aof_rewrites": int(persistence.get("aof_rewrites", 0)),
            "reads": socket_reads(self.pid),
            "cpu_s": cpu_seconds(self.pid),
            "user_sys_s": user_system(self.pid),
        }

    async def _no_rewrite(self, limit: float = 60.0) -> None:
        """Wait for an AOF rewrite an earlier figure started (it would swap the files mid-window)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            info = await self.redis.info("persistence")
            if not int(info.get("aof_rewrite_in_progress", 0)) and not int(
                info.get("aof_rewrite_scheduled", 0)
            ):
                return
            await asyncio.sleep(0.1)

    async def start(self) -> None:
        await self._no_rewrite()
        self._aof = _incr_file(self.data_dir)
        self._aof_offset = self._aof.stat().st_size if self._aof else 0
        for name in ("auto-aof-rewrite-percentage", "slowlog-log-slower-than", "slowlog-max-len"):
            self._saved.update(await self.redis.config_get(name))
        await self.redis.config_set("auto-aof-rewrite-percentage", 0)
        if self.slowlog:
            await self.redis.config_set("slowlog-max-len", self.slowlog_len)
            await self.redis.config_set("slowlog-log-slower-than", 0)
        await self.redis.slowlog_reset()
        self._before = await self._snapshot()

    async def stop(self, units: int) -> dict[str, Any]:
        """Per-unit figures since ``start`` (``units``: messages, requests ...)."""
        after = await self._snapshot()
        entries = await self.redis.slowlog_get(-1) if self.slowlog else []
        for name, value in self._saved.items():
            await self.redis.config_set(name, value)
        before = self._before
        n = max(1, units)
        delta = Counter(after["commandstats"])
        delta.subtract(before["commandstats"])
        per_name = {k: v for k, v in delta.items() if v > 0}
        own: Counter[str] = Counter()
        split = _split(entries, self.bench_client) if self.slowlog else None
        if split is not None:
            own = split.pop("bench_own")
        # The INFO that took the "after" snapshot is not in its own count; the one before it is.
        commands = sum(per_name.values()) - sum(own.values())
        out: dict[str, Any] = {
            "units": units,
            "seconds": round(after["time"] - before["time"], 2),
            "commands_per_unit": round(commands / n, 1),
            "aof_bytes_per_unit": round((after["aof_bytes"] - before["aof_bytes"]) / n, 1)
            if after["aof_rewrites"] == before["aof_rewrites"]
            else None,
            "redis_socket_reads_per_unit": round(
                (after["reads"] - before["reads"] - sum(own.values())) / n, 2
            ),
            "redis_cpu_us_per_unit": round((after["cpu_s"] - before["cpu_s"]) / n * 1e6, 1),
            "redis_cpu_percent_of_core": round(
                (after["cpu_s"] - before["cpu_s"]) / max(1e-9, after["time"] - before["time"]) * 100, 1
            ),
            "redis_cpu_user_system_us_per_unit": [
                round((after["user_sys_s"][i] - before["user_sys_s"][i]) / n * 1e6, 1) for i in (0, 1)
            ],
            "commands_by_name_per_unit": {
                k: round((v - own.get(k, 0)) / n, 2)
                for k, v in sorted(per_name.items(), key=lambda kv: -kv[1])
                if v - own.get(k, 0) > 0
            },
            "slowlog": "on" if self.slowlog else "off",
        }
        if self._aof is not None and self._aof.exists() and out["aof_bytes_per_unit"] is not None:
            by_command = aof_by_command(self._aof, self._aof_offset)
            out["aof_bytes_by_command_per_unit"] = {
                k: round(v / n, 1) for k, v in sorted(by_command.items(), key=lambda kv: -kv[1])
            }
        if split is not None:
            blocking = sum(v for k, v in per_name.items() if k in BLOCKING)
            top = split["top_level"]
            top_total = sum(top.values()) + blocking
            logged = sum(top.values()) + sum(split["inner"].values())
            out.update(
                {
                    "top_level_commands_per_unit": round(top_total / n, 2),
                    "top_level_by_name_per_unit": _per(top + Counter({"BLPOP (commandstats)": blocking}), n),
                    "script_calls_per_unit": _per(split["scripts"], n),
                    "script_us_per_call": {
                        script: round(us / max(1, split["scripts"][script]), 1)
                        for script, us in split["script_us"].items()
                    },
                    "script_us_per_unit": _per(split["script_us"], n),
                    "script_inner_commands_per_call": {
                        script: {
                            cmd: round(count / max(1, split["scripts"][script]), 2)
                            for cmd, count in sorted(inner.items(), key=lambda kv: -kv[1])
                        }
                        for script, inner in split["by_script"].items()
                    },
                    "inner_commands_per_unit": round(sum(split["inner"].values()) / n, 2),
                    "slowlog_missing_commands": commands - logged - blocking,
                    "slowlog_entries": len(entries),
                }
            )
        return out


def _per(counts: Counter[str], n: int) -> dict[str, float]:
    return {k: round(v / n, 2) for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v}


def _split(entries: list[dict[str, Any]], bench_client: str) -> dict[str, Any]:
    """Top-level commands by name, script calls by script, and each script's inner commands."""
    names = script_names()
    top: Counter[str] = Counter()
    inner: Counter[str] = Counter()
    scripts: Counter[str] = Counter()
    script_us: Counter[str] = Counter()
    by_script: dict[str, Counter[str]] = {}
    own: Counter[str] = Counter()
    pending: list[str] = []
    for entry in sorted(entries, key=lambda e: int(e["id"])):
        command = entry["command"]
        words = (command.decode(errors="replace") if isinstance(command, bytes) else str(command)).split()
        name = words[0].upper() if words else "?"
        client = entry.get("client_name") or ""
        client = client.decode() if isinstance(client, bytes) else str(client)
        address = entry.get("client_address") or ""
        address = address.decode() if isinstance(address, bytes) else str(address)
        if client == bench_client:
            own[name] += 1
            continue
        if address == LUA_CLIENT:
            pending.append(name)
            inner[name] += 1
            continue
        if name in BLOCKING:
            continue  # counted from commandstats (a timed-out blocking pop is not logged)
        top[name] += 1
        if name in ("EVALSHA", "EVAL"):
            sha = words[1].lower() if name == "EVALSHA" and len(words) > 1 else "eval"
            script = names.get(sha, f"script {sha[:8]}")
            scripts[script] += 1
            script_us[script] += int(entry.get("duration", 0))
            by_script.setdefault(script, Counter()).update(pending)
        pending = []
    return {
        "top_level": top,
        "inner": inner,
        "scripts": scripts,
        "script_us": script_us,
        "by_script": by_script,
        "bench_own": own,
    }
