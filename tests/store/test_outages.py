"""Errors Redis answers that mean "nothing ran, try again" reach callers as an outage (503), never a 500."""

from __future__ import annotations

import hashlib

import pytest
from redis.asyncio import Redis

from smsgw.errors import StoreUnavailable
from smsgw.settings import Settings
from smsgw.store.connection import connect, maybe_sent, translated
from tests.harness import base_env


async def test_a_script_redis_does_not_have_is_an_outage_that_did_not_run(redis: Redis) -> None:
    """After a failover a script can be missing on the new primary even after redis-py re-loaded it (the
    load and the call reached different servers): NOSCRIPT proves the script did not run."""
    missing = hashlib.sha1(b"return 1 -- never loaded").hexdigest()
    with pytest.raises(StoreUnavailable, match="NOSCRIPT"), translated():
        await redis.evalsha(missing, 0)
    with pytest.raises(Exception) as raw:  # noqa: PT011 - the raw reply, as the accept path's find-out sees it
        await redis.evalsha(missing, 0)
    assert not maybe_sent(raw.value), raw.value


async def test_redis_py_never_resends_a_command_whatever_the_url_says(redis_url: str) -> None:
    """``maybe_sent`` trusts "connecting to" as "nothing reached Redis"; a retry after a timeout would make it
    false (the first send ran, the reconnect was refused), and a re-sent script could run twice."""
    settings = Settings.from_env(base_env(f"{redis_url}?retry_on_timeout=true", "http://127.0.0.1:9/v1"))
    client = connect(settings)
    try:
        assert await client.ping()
        connection = await client.connection_pool.get_connection()
        try:
            assert connection.retry_on_timeout  # the URL asked for it; it must change nothing
            assert connection.retry._retries == 0  # redis-py 5 has no public reader
        finally:
            await client.connection_pool.release(connection)
    finally:
        await client.aclose()
