"""Child processes of a benchmark run: spawned with their own log file, optionally pinned, always stopped.

Each child gets the parent-death signal (Linux), so a benchmark killed with SIGKILL does not leave a gateway
or a worker behind; ``stop`` sends SIGTERM and waits, then SIGKILLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

__all__ = ["ROOT", "Proc", "cpu_seconds", "pin", "spawn", "wait_http"]

ROOT = Path(__file__).resolve().parents[2]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def cpu_seconds(pid: int) -> float:
    """CPU time of one process so far, all its threads: the scheduler's nanosecond count
    (``/proc/<pid>/task/*/schedstat``), else ``/proc/<pid>/stat`` utime + stime (10 ms ticks)."""
    try:
        return (
            sum(
                int((task / "schedstat").read_text().split()[0])
                for task in Path(f"/proc/{pid}/task").iterdir()
            )
            / 1e9
        )
    except (OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def pin(pid: int, cpus: set[int] | None) -> None:
    """Restrict a process (its threads started later inherit it) to ``cpus``; None leaves it free."""
    if cpus:
        os.sched_setaffinity(pid, cpus)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        self.terminate()
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path,
    *,
    cpus: set[int] | None = None,
    url: str = "",
    cwd: Path | None = None,
) -> Proc:
    """Run ``argv`` (``python -m ...`` of this interpreter when it starts with ``-m``) from the repo root, or
    from ``cwd`` (another checkout: ``python -m`` imports the package of the current folder first)."""
    command = [sys.executable, *argv] if argv[0] == "-m" else list(argv)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(  # our own interpreter and modules, no shell
            command,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd or ROOT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
        )
    pin(popen.pid, cpus)
    return Proc(name, popen, log_path, url)


async def wait_http(proc: Proc, path: str, limit: float = 30.0) -> None:
    """Until ``proc.url + path`` answers 200; raises with the log's tail when the process dies or hangs."""
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(proc.url + path, timeout=aiohttp.ClientTimeout(total=1)) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready at {proc.url}{path} within {limit}s:\n{proc.log_tail()}")
