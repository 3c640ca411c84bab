"""Session Redis (a real redis-server on a free port, AOF always), flushed before each test."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from smsgw.devtools.redis import EmbeddedRedis


@pytest.fixture(autouse=True)
def _no_smsgw_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build settings from dicts: a developer's SMSGW_* variables must not leak in."""
    for name in list(os.environ):
        if name.startswith("SMSGW_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def redis_url(redis: Redis, redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own, to kill and restart."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    """Readable info-level lines in captured output (structlog's default would print debug too)."""
    from smsgw import logs  # noqa: PLC0415

    logs.configure("console", "info")


@pytest.fixture(autouse=True)
def _finalize_after_each_test() -> Iterator[None]:
    """Run the finalizers of what a test left (client sockets of stopped processes' pools) at a safe point.
    Left to a later, random collection they can run inside ``compile()`` of pytest's assertion rewriting; the
    ResourceWarning's traceback is then formatted with a nested ``ast.parse``, which CPython 3.11.7 (this
    machine's) answers with "SystemError: AST constructor recursion depth mismatch" (gh-106905, fixed in
    3.11.8): a passing session that fails at its end, or a test that fails for nothing."""
    yield
    gc.collect()
