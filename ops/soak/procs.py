"""The product's processes in a soak run: the sandbox, gateways and workers, each killable on its own.

Each is ``python -m smsgw <command>`` in its own session (a signal reaches it alone) with the parent-death
signal set, so a soak killed with SIGKILL leaves nothing behind. A slot keeps its port across restarts, so
the balancer and the sandbox's callback URL stay valid.
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp

from smsgw.devtools.redis import free_port

__all__ = ["ROOT", "Slot", "die_with_parent"]

ROOT: Final = Path(__file__).resolve().parents[2]
_PR_SET_PDEATHSIG: Final = 1


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGKILL when the soak dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Slot:
    """One product process (``command`` is gateway, worker or sandbox) and its restarts."""

    name: str
    command: str
    env: Mapping[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, extra: Mapping[str, str]) -> None:
        """Spawn (again); ``extra`` names the port variable for this command."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
        env.update(self.env)
        env.update(extra)
        log = (self.log_dir / f"{self.name}.log").open("ab")
        self.starts += 1
        log.write(f"\n--- soak: start #{self.starts} at {time.time():.3f}\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smsgw", self.command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
        )
        log.close()

    def signal(self, sig: int) -> bool:
        if not self.alive():
            return False
        assert self.process is not None
        os.kill(self.process.pid, sig)
        return True

    async def wait_exit(self, limit: float) -> int | None:
        """The exit code once the process ended, SIGKILLing it after ``limit`` seconds."""
        process = self.process
        if process is None:
            return None
        try:
            return await asyncio.to_thread(process.wait, limit)
        except subprocess.TimeoutExpired:
            process.kill()
            return await asyncio.to_thread(process.wait)

    async def wait_http(self, path: str, limit: float = 30.0) -> None:
        """Until ``path`` answers 200; raises with the log's tail when the process dies or hangs."""
        deadline = time.monotonic() + limit
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(self.url + path, timeout=aiohttp.ClientTimeout(total=1)) as answer:
                        if answer.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {self.url}{path} within {limit}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 1500) -> str:
        path = self.log_dir / f"{self.name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
