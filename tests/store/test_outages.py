"""Errors Redis answers that mean "nothing ran, try again" reach callers as an outage (503), never a 500."""

from __future__ import annotations

import hashlib

import pytest
from redis.asyncio import Redis

from smsgw.errors import StoreUnavailable
from smsgw.store.connection import maybe_sent, translated


async def test_a_script_redis_does_not_have_is_an_outage_that_did_not_run(redis: Redis) -> None:
    """After a failover a script can be missing on the new primary even after redis-py re-loaded it (the
    load and the call reached different servers): NOSCRIPT proves the script did not run."""
    missing = hashlib.sha1(b"return 1 -- never loaded").hexdigest()
    with pytest.raises(StoreUnavailable, match="NOSCRIPT"), translated():
        await redis.evalsha(missing, 0)
    with pytest.raises(Exception) as raw:  # noqa: PT011 - the raw reply, as the accept path's find-out sees it
        await redis.evalsha(missing, 0)
    assert not maybe_sent(raw.value), raw.value
