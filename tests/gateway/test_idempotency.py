"""``Idempotency-Key`` on ``POST /v1/messages``: replay, mismatch, racing duplicates, per-client keys."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from smsgw.gateway.idempotency import HASH_HEX, body_hash
from smsgw.store import keys
from tests.gateway.conftest import call, fields_of, message_keys, numbers, problem
from tests.harness import Stack

BODY = {
    "to": ["995511194242", "995511194243"],
    "text": "Your code is 1234",
    "reference": "order-7",
    "priority": "transactional",
}
# The same JSON value, other key order and whitespace.
SAME = (
    b'{ "reference" : "order-7",\n  "priority":"transactional", "text": "Your code is 1234",'
    b'\t"to": [ "995511194242","995511194243" ] }'
)


async def post(stack: Stack, key: str, *, who: str = "auth", body: object = BODY, raw: bytes | None = None):
    headers = {"Idempotency-Key": key}
    if raw is not None:
        return await call(
            stack,
            "POST",
            "/v1/messages",
            who=who,
            data=raw,
            headers={**headers, "Content-Type": "application/json"},
        )
    return await call(stack, "POST", "/v1/messages", who=who, json=body, headers=headers)


async def test_same_key_same_body_replays_and_sends_once(live: Stack, redis: Redis) -> None:
    first = await post(live, "order-7-sms")
    assert first.status == 202, first.text
    second = await post(live, "order-7-sms", raw=SAME)
    assert second.status == 202, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["recipients"][0]["number"] == "995511194242"
    await live.wait_status(first.json()["id"], "delivered")
    third = await post(live, "order-7-sms", raw=SAME)
    assert third.status == 202
    assert third.json()["id"] == first.json()["id"]
    assert await message_keys(redis) == [keys.message(first.json()["id"])]
    await asyncio.sleep(0.2)  # a second send, if there were one, has had time to reach the sandbox
    assert await live.sandbox_counts() == {"995511194242": 1, "995511194243": 1}
    assert len(await live.sandbox_sends()) == 1


async def test_same_key_different_body_is_422(stack: Stack, redis: Redis) -> None:
    first = await post(stack, "k-1")
    assert first.status == 202
    for changed in (
        {**BODY, "text": "Your code is 9999"},
        {**BODY, "to": list(reversed(BODY["to"]))},
        {**BODY, "reference": None},
    ):
        answer = await post(stack, "k-1", body=changed)
        errors = fields_of(problem(answer, 422, "validation"))
        assert "Idempotency-Key" in errors
        assert "different" in errors["Idempotency-Key"]
    assert await message_keys(redis) == [keys.message(first.json()["id"])]


async def test_racing_duplicates_create_one_message(stack: Stack, redis: Redis) -> None:
    """The key is decided in the accept script itself: concurrent duplicates all answer the one message
    (the first stores it, the others replay it), so there is no in-flight window to answer 409 for."""
    body = {"to": numbers(2_000), "text": "race"}
    answers = await asyncio.gather(*(post(stack, "k-race", body=body) for _ in range(4)))
    assert [a.status for a in answers] == [202] * 4, [a.text[:200] for a in answers]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    assert await message_keys(redis) == [keys.message(ids.pop())]


async def test_replay_of_a_request_that_no_longer_validates(stack: Stack) -> None:
    """A retry after send_at has passed must still answer the original, not 422."""
    moment = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    body = {**BODY, "send_at": moment}
    first = await post(stack, "k-late", body=body)
    assert first.status == 202, first.text
    await asyncio.sleep(2)
    again = await post(stack, "k-late", body=body)
    assert again.status == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    problem(await post(stack, "k-late", body={**body, "text": "changed"}), 422)


async def test_keys_are_per_client(stack: Stack, redis: Redis) -> None:
    mine = await post(stack, "shared-key")
    theirs = await post(stack, "shared-key", who="ops", body={**BODY, "priority": "otp"})
    assert mine.status == 202
    assert theirs.status == 202
    assert mine.json()["id"] != theirs.json()["id"]
    # ops' different body under the same key did not collide with auth's record.
    assert len(await message_keys(redis)) == 2
    again = await post(stack, "shared-key", who="ops", body={**BODY, "priority": "otp"})
    assert again.json()["id"] == theirs.json()["id"]


async def test_key_length_limit(stack: Stack, redis: Redis) -> None:
    body = problem(await post(stack, "k" * 256), 400, "bad-request")
    assert "255" in body["detail"]
    assert await message_keys(redis) == []
    assert (await post(stack, "k" * 255)).status == 202
    problem(await post(stack, ""), 400)


async def test_a_refused_request_frees_its_key(stack: Stack, redis: Redis) -> None:
    invalid = await post(stack, "k-fix", body={**BODY, "text": "  "})
    problem(invalid, 422)
    assert [k async for k in redis.scan_iter(match="smsgw:idem:*")] == []
    fixed = await post(stack, "k-fix")
    assert fixed.status == 202, fixed.text
    key = keys.idempotency("auth-service", "messages", hashlib.sha256(b"k-fix").hexdigest()[:HASH_HEX])
    record = await redis.get(key)
    assert record == f"done|{body_hash(BODY)}|{fixed.json()['id']}|202|"
    ttl = await redis.ttl(key)
    assert 0 < ttl <= keys.IDEMPOTENCY_TTL


async def test_no_key_means_no_deduplication(stack: Stack, redis: Redis) -> None:
    first = await call(stack, "POST", "/v1/messages", json=BODY)
    second = await call(stack, "POST", "/v1/messages", json=json.loads(SAME))
    assert first.status == second.status == 202
    assert first.json()["id"] != second.json()["id"]
    assert len(await message_keys(redis)) == 2
