"""Opt-in HA: with ``SMSGW_REDIS_WAIT_REPLICAS`` a 202 waits for that many replicas (WAIT); without their
confirmation the answer is the contract's 503 ``/outcome-unknown`` (stored on the primary, maybe not beyond),
and a retry with the same Idempotency-Key answers the stored message."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsgw.devtools.redis import EmbeddedRedis
from tests.harness import Stack, eventually

ENV = {"SMSGW_REDIS_WAIT_REPLICAS": "1", "SMSGW_REDIS_WAIT_TIMEOUT": "0.3", "SMSGW_REDIS_TIMEOUT": "1"}


@pytest.fixture
def replica(own_redis: EmbeddedRedis, tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "replica", extra_args=("--replicaof", "127.0.0.1", str(own_redis.port)))
    server.start()
    yield server
    server.stop()


async def _linked(stack: Stack) -> bool:
    async with stack.http.get(f"{stack.url}/readyz") as response:
        return response.status == 200


async def test_a_202_waits_for_the_replica_and_says_so_when_it_cannot(
    own_redis: EmbeddedRedis, replica: EmbeddedRedis
) -> None:
    async with Stack(own_redis.url, env=ENV, worker=False) as stack:
        await eventually(lambda: _linked(stack), timeout=5)
        headers = {**stack.auth(), "Idempotency-Key": "ha-1"}
        body = {"to": "+995591300001", "text": "Replicated"}

        async def replicated() -> bool:
            async with stack.http.post(f"{stack.url}/v1/messages", json=body, headers=headers) as answer:
                return answer.status == 202

        await eventually(replicated, timeout=10)  # once the replica has caught up, 202

        pid = int(replica.pidfile.read_text())
        os.kill(pid, signal.SIGSTOP)  # the replica stops acknowledging
        try:
            lagging = {"to": "+995591300002", "text": "Not confirmed"}
            headers = {**stack.auth(), "Idempotency-Key": "ha-2"}
            async with stack.http.post(f"{stack.url}/v1/messages", json=lagging, headers=headers) as answer:
                assert answer.status == 503
                problem = await answer.json(content_type=None)
                assert problem["type"].endswith("/outcome-unknown"), problem
                assert answer.headers["Retry-After"].isdigit()
                assert "replica" in problem["detail"]
        finally:
            os.kill(pid, signal.SIGCONT)
        # Stored on the primary: the retry with the same key answers that message, and sends nothing new.
        async with stack.http.post(f"{stack.url}/v1/messages", json=lagging, headers=headers) as again:
            assert again.status == 202, await again.text()
            first = await again.json()
        async with stack.http.post(f"{stack.url}/v1/messages", json=lagging, headers=headers) as third:
            assert (await third.json())["id"] == first["id"]


def test_the_wait_must_fit_in_the_redis_timeout() -> None:
    from smsgw.errors import SettingsError  # noqa: PLC0415
    from smsgw.settings import Settings  # noqa: PLC0415

    with pytest.raises(SettingsError, match="SMSGW_REDIS_WAIT_TIMEOUT"):
        Settings.from_env({"SMSGW_REDIS_WAIT_REPLICAS": "1", "SMSGW_REDIS_WAIT_TIMEOUT": "2"})
