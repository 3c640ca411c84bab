"""Dead letters: listed for admin clients only, replayed once, and the replay sent exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from smsgw.store import keys
from smsgw.store.dispatch import Dispatch, Outcome, Send
from tests.gateway.conftest import call, parse_time, problem
from tests.harness import Stack

A, B = "995511194242", "995511194243"
DEAD_FIELDS = {"id", "message_id", "unit", "client", "priority", "numbers", "reason", "attempts", "dead_at"}


@pytest.fixture
async def failing(redis_url: str) -> AsyncIterator[Stack]:
    """uBill answers every send with a 5xx; the worker gives a unit up after two attempts."""
    async with Stack(redis_url, env={"SMSGW_MAX_ATTEMPTS": "2"}, sandbox={"error_rate": "1"}) as stack:
        yield stack


async def test_dead_letters_need_an_admin_client(stack: Stack) -> None:
    body = problem(await call(stack, "GET", "/v1/admin/dead-letters", who="auth"), 403, "forbidden")
    assert "admin" in body["detail"]
    problem(await call(stack, "POST", "/v1/admin/dead-letters/msg_x:0/replay", who="auth"), 403, "forbidden")
    problem(await call(stack, "GET", "/v1/admin/dead-letters", who=None), 401, "unauthorized")
    answer = await call(stack, "GET", "/v1/admin/dead-letters", who="ops")
    assert answer.status == 200
    assert answer.content_type == "application/json"
    assert answer.json() == {"dead_letters": []}


async def test_replay_of_unknown_dead_letter_is_404(stack: Stack) -> None:
    for dead_id in ("msg_nope:0", "msg_nope", "msg_nope:x"):
        answer = await call(stack, "POST", f"/v1/admin/dead-letters/{dead_id}/replay", who="ops")
        problem(answer, 404, "not-found")


async def test_replay_of_a_unit_that_is_not_dead_is_409(stack: Stack, redis: Redis) -> None:
    created = await stack.send({"to": [A], "text": "hello"})
    answer = await call(stack, "POST", f"/v1/admin/dead-letters/{created['id']}:0/replay", who="ops")
    problem(answer, 409, "conflict")
    assert await redis.exists(keys.message(f"{created['id']}-r0")) == 0


async def test_dead_letter_is_listed_and_replayed_once(failing: Stack, redis: Redis) -> None:
    created = await failing.send({"to": [A, B], "text": "hello", "reference": "dl-1"})
    dead = await failing.wait_status(created["id"], "failed")
    assert all("retries exhausted" in (r["error"] or "") for r in dead["recipients"])
    assert await failing.sandbox_counts() == {}  # every attempt was refused with a 5xx: nothing sent

    listed = await call(failing, "GET", "/v1/admin/dead-letters", who="ops")
    assert listed.status == 200
    items = listed.json()["dead_letters"]
    assert len(items) == 1
    item = items[0]
    assert set(item) == DEAD_FIELDS
    assert item["id"] == f"{created['id']}:0"
    assert item["message_id"] == created["id"]
    assert item["client"] == "auth-service"
    assert item["priority"] == "transactional"
    assert item["numbers"] == [A, B]
    assert item["attempts"] == 2
    assert "retries exhausted after 2 attempts" in item["reason"]
    assert "HTTP 500" in item["reason"]
    parse_time(item["dead_at"])

    await failing.sandbox_patch({"error_rate": 0})
    replay = await call(failing, "POST", f"/v1/admin/dead-letters/{item['id']}/replay", who="ops")
    assert replay.status == 202, replay.text
    replayed = replay.json()
    assert replayed["id"] == f"{created['id']}-r0"
    assert replayed["reference"] == "dl-1"
    assert [r["number"] for r in replayed["recipients"]] == [A, B]
    await failing.wait_status(replayed["id"], "delivered")

    again = await call(failing, "POST", f"/v1/admin/dead-letters/{item['id']}/replay", who="ops")
    body = problem(again, 409, "conflict")
    assert replayed["id"] in body["detail"] or "not a dead letter" in body["detail"]
    assert (await call(failing, "GET", "/v1/admin/dead-letters", who="ops")).json() == {"dead_letters": []}
    # The original keeps its terminal status; the replay reached uBill exactly once per number.
    assert (await failing.get(created["id"]))["status"] == "failed"
    assert await failing.sandbox_counts() == {A: 1, B: 1}
    assert len(await failing.sandbox_sends()) == 1


async def test_dead_letter_written_by_the_settle_script(
    stack: Stack, redis: Redis, dispatch: Dispatch
) -> None:
    """A dead unit recorded without a worker (as the worker's settle does) is listed and replayable."""
    created = await stack.send({"to": [A], "text": "hello", "priority": "otp"}, who="ops")
    (job,) = (await dispatch.take("otp", 1, 10)).jobs
    assert isinstance(job, Send) and job.numbers == (A,)
    before = datetime.now(UTC) - timedelta(seconds=1)
    await dispatch.settle(job, Outcome.DEAD, reason="retries exhausted after 8 attempts: boom")
    items = (await call(stack, "GET", "/v1/admin/dead-letters", who="ops")).json()["dead_letters"]
    assert [(i["id"], i["priority"], i["client"], i["reason"]) for i in items] == [
        (f"{created['id']}:0", "otp", "ops", "retries exhausted after 8 attempts: boom")
    ]
    assert before <= datetime.fromisoformat(items[0]["dead_at"]) <= datetime.now(UTC)
    replay = await call(stack, "POST", f"/v1/admin/dead-letters/{created['id']}:0/replay", who="ops")
    assert replay.status == 202, replay.text
    assert replay.json()["priority"] == "otp"
    # The dead unit has no timer left; the replay has its own.
    queued = await redis.zrange(keys.lane_queue("otp"), 0, -1)
    assert queued == [f"{created['id']}-r0:0"]
    problem(await call(stack, "POST", f"/v1/admin/dead-letters/{created['id']}:0/replay", who="ops"), 409)
    assert sorted(await redis.zrange(keys.lane_queue("otp"), 0, -1)) == sorted(queued)
