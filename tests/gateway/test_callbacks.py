"""``GET /callbacks/ubill``: key, parameters, the status state machine, orphans, events and the IP allowlist.

The sandbox's own callbacks are switched off (``callback_url: null``) so each test sends exactly the callbacks
it means to, the way uBill would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from smsgw.store import keys
from smsgw.store.dispatch import Dispatch, Outcome, Send
from tests.gateway.conftest import Answer, call, list_length
from tests.harness import CALLBACK_KEY, Stack, eventually

A, B = "995511194242", "995511194243"
EVENT_FIELDS = {
    "message_id",
    "client",
    "reference",
    "number",
    "status",
    "provider_sms_id",
    "provider_status_id",
    "occurred_at",
}


@pytest.fixture
async def quiet(redis_url: str) -> AsyncIterator[Stack]:
    """Gateway + worker + sandbox that accepts sends but calls nothing back."""
    async with Stack(redis_url) as stack:
        await stack.sandbox_patch({"callback_url": None})
        yield stack


async def callback(stack: Stack, *, key: str | None = CALLBACK_KEY, **params: str) -> Answer:
    query = {"key": key, **params} if key is not None else dict(params)
    return await call(stack, "GET", "/callbacks/ubill", who=None, params=query)


def params(sms_id: str, number: str, status_id: int, date: str = "2030-01-01 16:00:00") -> dict[str, str]:
    return {"smsID": sms_id, "number": number, "statusID": str(status_id), "date": date}


async def submitted(stack: Stack, to: list[str], reference: str | None = "ref-1") -> tuple[str, str]:
    """A message uBill (the sandbox) accepted: its id and smsID."""
    body: dict[str, Any] = {"to": to, "text": "hello"}
    if reference:
        body["reference"] = reference
    created = await stack.send(body)
    done = await stack.wait_status(created["id"], "submitted")
    sms_id = done["recipients"][0]["provider_sms_id"]
    assert sms_id
    return created["id"], sms_id


async def statuses(stack: Stack, message_id: str) -> dict[str, str]:
    return {r["number"]: r["status"] for r in (await stack.get(message_id))["recipients"]}


def ok(answer: Answer) -> None:
    assert answer.status == 200, answer.text
    assert answer.text == "OK"


# --- key and parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", [None, "", "wrong-key", CALLBACK_KEY + "x", CALLBACK_KEY[:-1], CALLBACK_KEY.upper()]
)
async def test_wrong_or_missing_key_is_403(stack: Stack, redis: Redis, key: str | None) -> None:
    answer = await callback(stack, key=key, **params("100000", A, 1))
    assert answer.status == 403
    assert answer.content_type == "text/plain"
    assert key is None or not key or key not in answer.text
    assert await list_length(redis, keys.orphan("100000")) == 0


MALFORMED = [
    ("smsID missing", {"smsID": None}, "smsID"),
    ("smsID with spaces", {"smsID": "12 34"}, "smsID"),
    ("smsID too long", {"smsID": "9" * 65}, "smsID"),
    ("number missing", {"number": None}, "number"),
    ("number with two pluses", {"number": "++995511194242"}, "number"),
    ("number letters", {"number": "99551119424x"}, "number"),
    ("number too short", {"number": "12345"}, "number"),
    ("statusID missing", {"statusID": None}, "statusID"),
    ("statusID 5", {"statusID": "5"}, "statusID"),
    ("statusID negative", {"statusID": "-1"}, "statusID"),
    ("statusID text", {"statusID": "delivered"}, "statusID"),
    ("date missing", {"date": None}, "date"),
    ("date without time", {"date": "2030-01-01"}, "date"),
    ("date iso", {"date": "2030-01-01T16:00:00Z"}, "date"),
    ("date impossible", {"date": "2030-02-30 16:00:00"}, "date"),
]


@pytest.mark.parametrize(("change", "name"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_parameter_is_400(
    stack: Stack, redis: Redis, change: dict[str, str | None], name: str
) -> None:
    query = {**params("100000", A, 1), **change}
    answer = await callback(stack, **{k: v for k, v in query.items() if v is not None})
    assert answer.status == 400
    assert answer.content_type == "text/plain"
    assert name in answer.text
    assert await list_length(redis, keys.orphan("100000")) == 0


async def test_no_configured_key_refuses_everything(redis_url: str, redis: Redis) -> None:
    async with Stack(redis_url, env={"SMSGW_CALLBACK_KEY": ""}, worker=False) as unkeyed:
        for key in (None, ""):
            answer = await callback(unkeyed, key=key, **params("100000", A, 1))
            assert answer.status == 403
    assert await list_length(redis, keys.orphan("100000")) == 0


async def test_key_is_checked_before_parameters(stack: Stack) -> None:
    answer = await callback(stack, key="wrong", smsID="x y")
    assert answer.status == 403


# --- the state machine ----------------------------------------------------------------------------


async def test_callbacks_move_recipients_forward(quiet: Stack) -> None:
    message_id, sms_id = await submitted(quiet, [A, B])
    ok(await callback(quiet, **params(sms_id, A, 0)))
    assert await statuses(quiet, message_id) == {A: "sent", B: "submitted"}
    ok(await callback(quiet, **params(sms_id, A, 3)))
    ok(await callback(quiet, **params(sms_id, B, 2)))
    assert await statuses(quiet, message_id) == {A: "pending", B: "failed"}
    ok(await callback(quiet, **params(sms_id, A, 1)))
    message = await quiet.get(message_id)
    assert message["status"] == "mixed"
    assert message["counts"] == {"delivered": 1, "failed": 1}
    assert all(r["provider_sms_id"] == sms_id for r in message["recipients"])


async def test_duplicates_are_ok_and_change_nothing(quiet: Stack, redis: Redis) -> None:
    message_id, sms_id = await submitted(quiet, [A])
    ok(await callback(quiet, **params(sms_id, A, 1)))
    events = await redis.xlen(keys.client_stream("auth-service"))
    before = await quiet.get(message_id)
    for _ in range(3):
        ok(await callback(quiet, **params(sms_id, A, 1)))
    assert await quiet.get(message_id) == before
    assert await redis.xlen(keys.client_stream("auth-service")) == events


async def test_sent_after_delivered_does_not_regress(quiet: Stack, redis: Redis) -> None:
    message_id, sms_id = await submitted(quiet, [A])
    ok(await callback(quiet, **params(sms_id, A, 1)))
    events = await redis.xlen(keys.client_stream("auth-service"))
    ok(await callback(quiet, **params(sms_id, A, 0)))
    ok(await callback(quiet, **params(sms_id, A, 3)))
    assert await statuses(quiet, message_id) == {A: "delivered"}
    assert await redis.xlen(keys.client_stream("auth-service")) == events


@pytest.mark.parametrize(("first", "then"), [(1, 2), (2, 1), (4, 1), (2, 4)])
async def test_terminal_never_changes(quiet: Stack, first: int, then: int) -> None:
    names = {1: "delivered", 2: "failed", 4: "error"}
    message_id, sms_id = await submitted(quiet, [A])
    ok(await callback(quiet, **params(sms_id, A, first)))
    ok(await callback(quiet, **params(sms_id, A, then)))
    assert await statuses(quiet, message_id) == {A: names[first]}


async def test_number_not_in_that_send_is_ok_and_ignored(quiet: Stack) -> None:
    message_id, sms_id = await submitted(quiet, [A])
    ok(await callback(quiet, **params(sms_id, B, 1)))
    assert await statuses(quiet, message_id) == {A: "submitted"}


async def test_unknown_sms_id_is_kept_and_applied_when_recorded(quiet: Stack, redis: Redis) -> None:
    # The sandbox's first smsID is 100000: its callbacks arrive before the worker has even sent the message.
    ok(await callback(quiet, **params("100000", A, 0)))
    ok(await callback(quiet, **params("100000", A, 1)))
    assert await list_length(redis, keys.orphan("100000")) == 2
    assert await redis.zscore(keys.ORPHANS, "100000") is not None
    created = await quiet.send({"to": [A, B], "text": "hello"})
    done = await quiet.wait_for(created["id"], lambda m: m["recipients"][0]["status"] == "delivered")
    assert done["recipients"][0]["provider_sms_id"] == "100000"
    assert done["recipients"][1]["status"] == "submitted"
    assert await redis.exists(keys.orphan("100000")) == 0
    assert await redis.zscore(keys.ORPHANS, "100000") is None


async def test_orphan_settled_through_the_settle_script(stack: Stack, dispatch: Dispatch) -> None:
    """The same, driven without a worker: take and settle unit 0 as the worker would."""
    ok(await callback(stack, **params("777", A, 2)))
    created = await stack.send({"to": [A], "text": "hello"})
    (job,) = (await dispatch.take("transactional", 1, 10)).jobs
    assert isinstance(job, Send)
    await dispatch.settle(job, Outcome.ACKED, sms_id="777", reconcile_after=600)
    message = await stack.get(created["id"])
    assert message["recipients"][0]["status"] == "failed"
    assert message["recipients"][0]["provider_sms_id"] == "777"


# --- events ---------------------------------------------------------------------------------------


async def test_each_change_is_published_and_streamed(quiet: Stack, redis: Redis) -> None:
    message_id, sms_id = await submitted(quiet, [A], reference="order-9")
    pubsub = redis.pubsub()
    await pubsub.subscribe(
        keys.EVENTS_CHANNEL, keys.client_channel("auth-service"), keys.client_channel("shop")
    )
    confirmed = 0
    while confirmed < 3:  # SUBSCRIBE is asynchronous: publish only once the server confirmed all three
        message = await pubsub.get_message(timeout=1.0)
        confirmed += message is not None and message["type"] == "subscribe"
    try:
        ok(await callback(quiet, **params(sms_id, A, 1, date="2030-01-01 16:00:00")))
        ok(await callback(quiet, **params(sms_id, A, 1, date="2030-01-01 16:00:05")))  # duplicate: no event
        seen: list[tuple[str, dict[str, Any]]] = []
        deadline = asyncio.get_running_loop().time() + 0.5
        while asyncio.get_running_loop().time() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if message is not None:
                seen.append((message["channel"], json.loads(message["data"])))
    finally:
        await pubsub.aclose()
    assert [channel for channel, _ in seen] == [keys.EVENTS_CHANNEL, keys.client_channel("auth-service")]
    event = seen[0][1]
    assert seen[1][1] == event
    assert set(event) == EVENT_FIELDS
    assert event == {
        "message_id": message_id,
        "client": "auth-service",
        "reference": "order-9",
        "number": A,
        "status": "delivered",
        "provider_sms_id": sms_id,
        "provider_status_id": 1,
        # uBill's date is Asia/Tbilisi (UTC+4).
        "occurred_at": "2030-01-01T12:00:00.000Z",
    }
    _id, entry = (await redis.xrevrange(keys.client_stream("auth-service"), count=1))[0]
    assert json.loads(entry["event"]) == event
    assert await redis.exists(keys.client_stream("shop")) == 0


# --- IP allowlist ---------------------------------------------------------------------------------


async def test_peer_outside_the_allowlist_is_403(redis_url: str, redis: Redis) -> None:
    env = {"SMSGW_CALLBACK_ALLOWED_IPS": "10.0.0.0/8, 192.168.1.7"}
    async with Stack(redis_url, env=env, worker=False) as s:
        answer = await callback(s, **params("100000", A, 1))
        assert answer.status == 403
        assert answer.content_type == "text/plain"
        assert await list_length(redis, keys.orphan("100000")) == 0


async def test_peer_inside_the_allowlist_is_served(redis_url: str, redis: Redis) -> None:
    env = {"SMSGW_CALLBACK_ALLOWED_IPS": "10.0.0.0/8,127.0.0.1/32"}
    async with Stack(redis_url, env=env, worker=False) as s:
        ok(await callback(s, **params("100000", A, 1)))
        assert await list_length(redis, keys.orphan("100000")) == 1
        assert (await callback(s, key="wrong", **params("100000", A, 1))).status == 403


async def test_sandbox_callbacks_reach_the_gateway(live: Stack) -> None:
    """The real loop: the sandbox calls back exactly as uBill would, and the gateway answers 2xx."""
    created = await live.send({"to": [A], "text": "hello"})
    await live.wait_status(created["id"], "delivered")

    async def all_answered() -> bool:
        async with live.http.get(f"{live.sandbox_url}/_sandbox/callbacks") as response:
            attempts = (await response.json())["callbacks"]
        return bool(attempts) and all(a["http_status"] == 200 for a in attempts)

    await eventually(all_answered, timeout=5)
