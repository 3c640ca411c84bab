"""A verification whose code's SMS provably was not stored is taken back; the 503 says nothing changed only
when the take-back worked. Faults are injected at the store's seam (the accept and the undo raise what a
Redis outage makes them raise); the gateway, its HTTP and Redis are real."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from smsgw.errors import NothingAccepted, StoreUnavailable
from smsgw.gateway.context import GATEWAY
from smsgw.gateway.verifications import VERIFY
from smsgw.store.verifications import keys as vkeys
from tests.harness import Stack
from tests.verify.support import start


async def _never_stored(*_args: Any, **_kwargs: Any) -> Any:
    raise NothingAccepted("Redis is unavailable (ConnectionError)")


async def _undo_fails(*_args: Any, **_kwargs: Any) -> None:
    raise StoreUnavailable("Redis is unavailable (ConnectionError)")


async def _records(redis: Redis) -> list[str]:
    return [key async for key in redis.scan_iter(vkeys.verification("ver_*"))]


@pytest.mark.parametrize("undo_works", [True, False])
async def test_nothing_changed_only_when_the_verification_was_taken_back(
    redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch, undo_works: bool
) -> None:
    async with Stack(redis_url, worker=False) as stack:
        app = stack.runners[-1].app
        monkeypatch.setattr(app[GATEWAY].store.messages, "accept", _never_stored)
        if not undo_works:
            monkeypatch.setattr(app[VERIFY].store, "undo", _undo_fails)
        answer = await start(stack, {"to": "995591600040"})
        records = await _records(redis)
    body = answer.json()
    assert answer.status == 503, body
    if undo_works:  # taken back: nothing is left, and a client may repeat even without a key
        assert records == []
        assert body.get("nothing_changed") is True and "nothing was accepted" in body["detail"], body
    else:  # the record stays: "nothing was accepted" would make a client repeat into a second verification
        assert len(records) == 1, records
        assert "nothing_changed" not in body and "nothing was accepted" not in body["detail"], body
