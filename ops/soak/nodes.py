"""The soak's Redis: one server (``single``), or a primary, two replicas and three Sentinels (``sentinel``).

Every server runs with AOF and ``appendfsync always`` (the durability the contract promises) and with
``--enable-protected-configs yes``, so the soak may ``CONFIG SET dir`` to provoke a failed write. Servers are
real processes in their own sessions (SIGKILL, SIGSTOP and SIGCONT reach only them) that die with the soak.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Final

from redis.asyncio import Redis

from ops.soak.procs import die_with_parent
from smsgw.devtools.redis import durable_args, find_server, free_port

__all__ = ["MASTER_NAME", "RedisNode", "SentinelNode", "Topology"]

MASTER_NAME: Final = "mymaster"
ADMIN_TIMEOUT: Final = 1.0


class RedisNode:
    """One redis-server on a fixed port and data dir, restartable with the same command line."""

    def __init__(self, name: str, data_dir: Path, replica_of: int | None = None) -> None:
        self.name = name
        self.data_dir = data_dir
        self.port = free_port()
        self.replica_of = replica_of
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped = False  # SIGSTOPped

    def argv(self) -> list[str]:
        args = [*durable_args(find_server(), self.port, self.data_dir), "--enable-protected-configs", "yes"]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return args

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
        )
        self.stopped = False

    async def wait_ready(self, limit: float = 15.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(Exception):
                async with self.admin() as client:
                    if await client.ping():
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer within {limit}s: {self.log_tail()}")

    def admin(self) -> Redis:
        """A fresh direct connection (never through the proxy) for CONFIG, INFO and reading streams."""
        return Redis(
            host="127.0.0.1",
            port=self.port,
            decode_responses=True,
            socket_timeout=ADMIN_TIMEOUT,
            socket_connect_timeout=ADMIN_TIMEOUT,
        )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def signal(self, sig: int) -> bool:
        pid = self.pid
        if pid is None:
            return False
        os.kill(pid, sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False
        return True

    def kill(self) -> None:
        if self.process is not None:
            if self.stopped:
                self.signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            if self.stopped:
                self.signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, chars: int = 600) -> str:
        path = self.data_dir / "redis.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


class SentinelNode:
    """One Sentinel (``redis-server <conf> --sentinel``) watching the primary."""

    def __init__(self, name: str, work_dir: Path, primary_port: int) -> None:
        self.name = name
        self.work_dir = work_dir
        self.port = free_port()
        self.primary_port = primary_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        conf = self.work_dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.work_dir}\n"
            f"logfile {self.work_dir / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 4000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 2\n"
        )
        self.process = subprocess.Popen(
            [find_server(), str(conf), "--sentinel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Topology:
    """The Redis side of a soak run; ``primary()`` is whichever server is the primary right now."""

    def __init__(self, kind: str, work_dir: Path) -> None:
        self.kind = kind
        first = RedisNode("redis-0", work_dir / "redis-0")
        self.nodes = [first]
        self.sentinels: list[SentinelNode] = []
        if kind == "sentinel":
            self.nodes += [RedisNode(f"redis-{i}", work_dir / f"redis-{i}", first.port) for i in (1, 2)]
            self.sentinels = [
                SentinelNode(f"sentinel-{i}", work_dir / f"sentinel-{i}", first.port) for i in range(3)
            ]
        self._primary_port = first.port

    async def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            await node.wait_ready()
        for sentinel in self.sentinels:
            sentinel.start()
        if self.sentinels:
            await self._wait_sentinels()

    async def _wait_sentinels(self, limit: float = 20.0) -> None:
        """Until every Sentinel knows the primary and both replicas (clients may then discover them)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ready = 0
            for sentinel in self.sentinels:
                with contextlib.suppress(Exception):
                    client = Redis(
                        host="127.0.0.1", port=sentinel.port, decode_responses=True, socket_timeout=1
                    )
                    async with client:
                        replicas = await client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                        ready += len(replicas) >= 2
            if ready == len(self.sentinels):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("the Sentinels did not discover both replicas in time")

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    async def primary(self) -> RedisNode:
        """The node most Sentinels name as primary (single: the only node); the last answer when none do."""
        if not self.sentinels:
            return self.nodes[0]
        votes: Counter[int] = Counter()
        for host, port in self.sentinel_addresses():
            with contextlib.suppress(Exception):
                client = Redis(host=host, port=port, decode_responses=True, socket_timeout=ADMIN_TIMEOUT)
                async with client:
                    address = await client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
                    votes[int(address[1])] += 1
        if votes:
            self._primary_port = votes.most_common(1)[0][0]
        return next((n for n in self.nodes if n.port == self._primary_port), self.nodes[0])

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.stop()
