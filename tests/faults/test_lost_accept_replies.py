"""Issue 9, the class of break 3: whatever becomes of an accept's reply, its answer is true and a repeat
stores nothing twice. A property test against a real Redis.

Hypothesis draws a run of sends (plain, with an ``Idempotency-Key``, facade calls with their fingerprint, a
rate-limited client), each repeated or not, and for each call what becomes of it between the gateway and
Redis: nothing (answered); the reply lost after Redis ran the script (a cut connection); the script run only
after the gateway's deadline (a stalled Redis), its reply then lost or delivered; the call never reaching
Redis. The loss is made at the store's one boundary with Redis (the accept's script batcher); everything
behind it is real. The checker then reads Redis:

- 202 (``Accepted``/``Replayed``) names a message that is stored, the one of its key or fingerprint;
- "nothing was accepted" (``StoreUnavailable``) names a message that is not stored, now or after every late
  script has run; a keyed or facade call whose script Redis ran (so the gateway found out) is answered so
  only while nothing is stored under its key;
- one key, one fingerprint: at most one message, whatever was repeated or lost;
- "outcome unknown" is never answered here (Redis always answers the find-out).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import redis.exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from smsgw.clock import now_ms
from smsgw.command import SendCommand
from smsgw.devtools.redis import EmbeddedRedis
from smsgw.errors import StoreOutcomeUnknown, StoreUnavailable
from smsgw.store import keys
from smsgw.store.messages import (
    Accepted,
    ClientLimit,
    Idempotency,
    Limited,
    Messages,
    Replayed,
)
from smsgw.store.scripts import Scripts
from tests.store.world import LossyBoundary

TIMEOUT_S = 0.25  # the store's Redis timeout: the accept's deadline is this far ahead (less a margin)
FATES = ("answered", "answered", "lost", "late", "slow", "unsent")
KINDS = ("plain", "keyed", "facade", "limited")
LIMIT = ClientLimit("limited", rate=5.0, burst=2)


@dataclass(frozen=True)
class Call:
    request: int  # which request (a repeat shares it)
    fate: str


@dataclass
class Request:
    kind: str
    n: int

    @property
    def client(self) -> str:
        return "limited" if self.kind == "limited" else "shop"

    @property
    def key(self) -> Idempotency | None:
        if self.kind not in ("keyed", "limited"):
            return None
        return Idempotency(
            self.client, "messages", hashlib.sha256(f"k{self.n}".encode()).hexdigest()[:32], "b"
        )

    @property
    def fingerprint(self) -> str | None:
        return keys.facade_retry(self.client, f"fp-{self.n}") if self.kind == "facade" else None


@dataclass
class Seen:
    """What the callers were told, per message id."""

    accepted: dict[str, int] = field(default_factory=dict)  # message id -> request
    refused: dict[str, int] = field(default_factory=dict)  # "nothing was accepted"
    late: list[asyncio.Task[Any]] = field(default_factory=list)


class Boundary(LossyBoundary):
    """The accept's batcher with a fate for its next call, scripts run after the deadline included."""

    def __init__(self, real: Any, redis: Redis, seen: Seen) -> None:
        super().__init__(real)
        self._redis, self._seen = redis, seen

    async def __call__(self, keys_: list[Any], args: list[Any]) -> Any:
        if self.fate == "late":  # Redis runs it after the deadline; the gateway has stopped waiting
            self._seen.late.append(asyncio.ensure_future(self._late(keys_, args)))
            raise redis.exceptions.TimeoutError("Timeout reading from 127.0.0.1")
        if self.fate == "slow":  # Redis runs it after the deadline, and its reply (wrote nothing) arrives
            await self._past_deadline(args)
            return await self._real(keys_, args)
        return await super().__call__(keys_, args)

    async def _past_deadline(self, args: list[Any]) -> None:
        deadline = int(orjson.loads(args[0])["deadline"])
        while True:
            seconds, micros = await self._redis.time()
            if seconds * 1000 + micros // 1000 > deadline:
                return
            await asyncio.sleep(0.01)

    async def _late(self, keys_: list[Any], args: list[Any]) -> None:
        await self._past_deadline(args)
        answer, _ = await self._real(keys_, args)
        assert int(answer[0]) == -1, f"a script run after its deadline answered {answer}"


calls = st.lists(st.tuples(st.integers(0, 5), st.sampled_from(FATES)), min_size=1, max_size=12).map(
    lambda drawn: [Call(r, f) for r, f in drawn]
)


# HYPOTHESIS_PROFILE=long: a local soak (600 examples, a few minutes), as for tests/store/test_stateful.py.
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
EXAMPLES = 600 if LONG else 40


@pytest.mark.timeout(0 if LONG else 120)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=6, max_size=6), run=calls)
def test_every_answer_after_a_lost_reply_is_true(
    redis_server: EmbeddedRedis, kinds: list[str], run: list[Call]
) -> None:
    asyncio.run(_run(redis_server.url, [Request(kind, n) for n, kind in enumerate(kinds)], run))


async def _run(url: str, requests: list[Request], run: list[Call]) -> None:
    redis = Redis.from_url(url, decode_responses=True)
    try:
        await redis.flushall()
        messages = Messages(redis, Scripts.load(redis), timeout=TIMEOUT_S)
        seen = Seen()
        boundary = Boundary(messages._accept, redis, seen)
        messages._accept = boundary  # type: ignore[assignment]
        for call in run:
            boundary.fate = call.fate
            await _send(redis, messages, requests, call, seen)
        await asyncio.gather(*seen.late)
        await _check(redis, requests, seen)
    finally:
        await redis.aclose()


async def _send(redis: Redis, messages: Messages, requests: list[Request], call: Call, seen: Seen) -> None:
    request = requests[call.request]
    text = f"request {call.request}"  # a repeat has the same body; the checker finds each message's request
    command = SendCommand(numbers=("995591000000",), text=text, brand_id=1, lane="transactional")
    message = command.message(request.client, now_ms=now_ms(), batch_size=100)
    try:
        outcome = await messages.accept(
            message,
            ttl_s=600,
            limit=LIMIT if request.kind == "limited" else None,
            idempotency=request.key,
            facade=request.kind == "facade",
            facade_retry=request.fingerprint,
        )
    except StoreOutcomeUnknown as exc:
        raise AssertionError(f"outcome unknown although Redis answered the find-out ({call})") from exc
    except StoreUnavailable:
        seen.refused[message.id] = call.request
        # With a key or a fingerprint, where the gateway found out (Redis ran something), "nothing was
        # accepted" also says no earlier request was: a caller told so while one was would send again under
        # a new key. A call that never reached Redis cannot ask; its 503 says to retry with the same key.
        earlier = await _stored_for(redis, call.request)
        if request.kind != "plain" and call.fate != "unsent":  # the fates where Redis ran the script
            assert not earlier, f"{call}: told nothing accepted, {earlier} is stored"
        return
    if isinstance(outcome, Accepted):
        assert outcome.view.meta.id == message.id
        seen.accepted[message.id] = call.request
    elif isinstance(outcome, Replayed):
        seen.accepted[outcome.message_id] = call.request
    else:  # a key is always repeated with its body: the only refusal left is the rate, and only when heard
        assert isinstance(outcome, Limited) and call.fate == "answered", (call, outcome)


async def _stored_for(redis: Redis, request: int) -> list[str]:
    found = []
    async for key in redis.scan_iter(keys.message("*")):
        if await redis.hget(key, "t") == f"request {request}":
            found.append(key.removeprefix(keys.message("")))
    return found


async def _check(redis: Redis, requests: list[Request], seen: Seen) -> None:
    stored = {k.removeprefix(keys.message("")) async for k in redis.scan_iter(keys.message("*"))}
    for message_id, request in seen.refused.items():
        assert message_id not in stored, f"request {request} was told nothing was accepted; {message_id} is"
    # Every stored message was answered 202 to some call: none was stored behind a caller's back.
    assert stored == set(seen.accepted), (stored, seen.accepted)
    owner = {m: int(str(await redis.hget(keys.message(m), "t")).split()[1]) for m in stored}
    for message_id, request in seen.accepted.items():
        kind = requests[request].kind
        assert kind == "plain" or owner[message_id] == request, (message_id, request, owner)
    for n, each in enumerate(requests):
        mine = sorted(m for m, r in owner.items() if r == n)
        if each.kind != "plain":
            assert len(mine) <= 1, f"{each.kind} request {n} stored {len(mine)} messages: {mine}"
