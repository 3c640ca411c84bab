"""``POST /v1/messages``, ``GET`` and ``DELETE /v1/messages/{id}``: the live gateway over a real Redis."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from redis.asyncio import Redis

from smsgw.devtools.redis import EmbeddedRedis
from smsgw.settings import token_sha256
from smsgw.store import keys
from tests.gateway.conftest import (
    call,
    fields_of,
    message_keys,
    numbers,
    parse_time,
    problem,
)
from tests.harness import CALLBACK_KEY, CLIENTS, TOKENS, Stack, stored

RESOURCE_FIELDS = {
    "id",
    "status",
    "priority",
    "brand_id",
    "reference",
    "segments",
    "encoding",
    "created_at",
    "send_at",
    "expires_at",
    "recipients",
    "counts",
}
RECIPIENT_FIELDS = {"number", "status", "provider_sms_id", "updated_at", "error"}
ONE = "995511194242"


def iso_in(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


# --- 400, 401, 403, 413, 415 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"to": ["995511194242"], "text": ',
        b"not json",
        b"\xff\xfe{}",
        b"",
        b"[" * 100_000,
        b'{"to": ' + b"[" * 5_000 + b"]" * 5_000 + b', "text": "x"}',
    ],
)
@pytest.mark.parametrize("key", [None, "k-malformed"])
async def test_malformed_json_is_400(stack: Stack, raw: bytes, key: str | None) -> None:
    headers = {"Content-Type": "application/json", **({"Idempotency-Key": key} if key else {})}
    answer = await call(stack, "POST", "/v1/messages", data=raw, headers=headers)
    body = problem(answer, 400, "bad-request")
    assert "JSON" in body["detail"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"to": ["995511194242"], "text": "hi \\ud83d"}',
        b'{"to": ["995511194242"], "text": "hi", "reference": "\\udc00x"}',
        b'{"to": ["995511194242"], "text": "hi", "\\ud800": 1}',
    ],
)
@pytest.mark.parametrize("key", [None, "k-surrogate"])
async def test_unpaired_surrogate_is_400_not_500(
    stack: Stack, redis: Redis, raw: bytes, key: str | None
) -> None:
    headers = {"Content-Type": "application/json", **({"Idempotency-Key": key} if key else {})}
    answer = await call(stack, "POST", "/v1/messages", data=raw, headers=headers)
    body = problem(answer, 400, "bad-request")
    assert "surrogate" in body["detail"]
    assert await message_keys(redis) == []


async def test_paired_surrogates_are_fine(stack: Stack) -> None:
    raw = b'{"to": ["995511194242"], "text": "hi \\ud83d\\ude00", "reference": "\\\\ud83d"}'
    answer = await call(stack, "POST", "/v1/messages", data=raw, headers={"Content-Type": "application/json"})
    assert answer.status == 202, answer.text
    assert answer.json()["encoding"] == "UCS-2"
    assert answer.json()["reference"] == "\\ud83d"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer tok-nobody-0000000000000000",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "tok-auth-4f1c0d2b9e8a7765",
    ],
)
async def test_missing_or_unknown_token_is_401(stack: Stack, redis: Redis, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = await call(
        stack, "POST", "/v1/messages", who=None, headers=headers, json={"to": [ONE], "text": "hello"}
    )
    problem(answer, 401, "unauthorized")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert await message_keys(redis) == []


async def test_brand_not_allowed_is_403(stack: Stack, redis: Redis) -> None:
    answer = await call(
        stack, "POST", "/v1/messages", who="shop", json={"to": [ONE], "text": "hi", "brand_id": 1}
    )
    body = problem(answer, 403, "forbidden")
    assert "brand 1" in body["detail"]
    assert await message_keys(redis) == []


async def test_otp_not_allowed_is_403(stack: Stack, redis: Redis) -> None:
    answer = await call(
        stack, "POST", "/v1/messages", who="shop", json={"to": [ONE], "text": "code 1234", "priority": "otp"}
    )
    body = problem(answer, 403, "forbidden")
    assert "otp" in body["detail"]
    assert await message_keys(redis) == []


async def test_body_over_1_mib_is_413(stack: Stack, redis: Redis) -> None:
    raw = json.dumps({"to": [ONE], "text": "x", "reference": "r" * (1024 * 1024)}).encode()
    assert len(raw) > 1024 * 1024
    answer = await call(
        stack,
        "POST",
        "/v1/messages",
        data=io.BytesIO(raw),
        headers={"Content-Type": "application/json", "Content-Length": str(len(raw))},
    )
    problem(answer, 413, "payload-too-large")
    assert await message_keys(redis) == []


async def test_chunked_body_over_1_mib_is_413(stack: Stack, redis: Redis) -> None:
    async def chunks() -> Any:
        yield b'{"to": ["995511194242"], "text": "x", "reference": "'
        for _ in range(17):
            yield b"r" * 65536
        yield b'"}'

    answer = await call(
        stack, "POST", "/v1/messages", data=chunks(), headers={"Content-Type": "application/json"}
    )
    problem(answer, 413, "payload-too-large")
    assert await message_keys(redis) == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_not_json_is_415(stack: Stack, content_type: str | None) -> None:
    raw = json.dumps({"to": [ONE], "text": "hello"}).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    answer = await call(stack, "POST", "/v1/messages", data=raw, headers=headers)
    problem(answer, 415, "unsupported-media-type")


# --- 422 ------------------------------------------------------------------------------------------

INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("bad number named by index", {"to": [ONE, "12345"]}, "to[1]", "'12345'"),
    ("second bad number too", {"to": ["abc", ONE, "+995 322"]}, "to[2]", "'+995 322'"),
    ("number not a string", {"to": [ONE, 995511194243]}, "to[1]", "string"),
    ("country not allowed", {"to": ["+1 202 555 0143"]}, "to[0]", "country US is not allowed"),
    ("one bad string", {"to": "12345"}, "to", "'12345'"),
    ("too many numbers", {"to": numbers(10_001)}, "to", "at most 10000"),
    ("empty list", {"to": []}, "to", "1 to 10,000"),
    ("to missing", {"to": None}, "to", "required"),
    ("to an object", {"to": {"n": ONE}}, "to", "required"),
    ("text blank", {"text": " \n\t "}, "text", "blank"),
    ("text empty", {"text": ""}, "text", "blank"),
    ("text too long", {"text": "x" * 1601}, "text", "1600"),
    ("text missing", {"text": None}, "text", "required"),
    ("text not a string", {"text": 42}, "text", "string"),
    ("otp over 10 recipients", {"priority": "otp", "to": numbers(11)}, "to", "at most 10"),
    ("send_at in the past", {"send_at": iso_in(-timedelta(minutes=1))}, "send_at", "future"),
    ("send_at over 30 days", {"send_at": iso_in(timedelta(days=30, minutes=5))}, "send_at", "30 days"),
    ("send_at without offset", {"send_at": "2031-01-01T10:00:00"}, "send_at", "offset"),
    ("send_at a date only", {"send_at": "2031-01-01"}, "send_at", "RFC 3339"),
    ("send_at not a string", {"send_at": 1767000000}, "send_at", "RFC 3339"),
    ("validity zero", {"validity": 0}, "validity", "between 1"),
    ("validity negative", {"validity": -5}, "validity", "between 1"),
    ("validity a string", {"validity": "600"}, "validity", "integer"),
    ("validity a bool", {"validity": True}, "validity", "integer"),
    ("validity a float", {"validity": 60.5}, "validity", "integer"),
    ("validity too long", {"validity": 30 * 86_400 + 1}, "validity", "between 1"),
    ("stop_list a string", {"stop_list": "false"}, "stop_list", "true or false"),
    ("stop_list a number", {"stop_list": 0}, "stop_list", "true or false"),
    ("reference too long", {"reference": "r" * 129}, "reference", "128"),
    ("reference not a string", {"reference": 7}, "reference", "128"),
    ("unknown field", {"sender": "ACME"}, "sender", "unknown field"),
    ("priority invalid", {"priority": "urgent"}, "priority", "otp, transactional, bulk"),
    ("priority wrong case", {"priority": "OTP"}, "priority", "otp, transactional, bulk"),
    ("brand_id a string", {"brand_id": "1"}, "brand_id", "integer"),
]


@pytest.mark.parametrize(
    ("change", "field", "says"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
async def test_each_validation_rule_is_422(
    stack: Stack, redis: Redis, change: dict[str, Any], field: str, says: str
) -> None:
    body = {"to": [ONE], "text": "hello"}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    answer = await call(stack, "POST", "/v1/messages", json=body)
    errors = fields_of(problem(answer, 422, "validation"))
    assert field in errors, errors
    assert says in errors[field], errors[field]
    assert await message_keys(redis) == []


async def test_every_validation_error_is_reported_at_once(stack: Stack) -> None:
    answer = await call(
        stack,
        "POST",
        "/v1/messages",
        json={"to": ["1", ONE, "2"], "text": " ", "validity": 0, "priority": "bulk", "x": 1},
    )
    body = problem(answer, 422)
    assert set(fields_of(body)) == {"to[0]", "to[2]", "text", "validity", "x"}
    assert "more" in body["detail"]


@pytest.mark.parametrize("raw", [b"[]", b'"hello"', b"42", b"null"])
async def test_body_not_an_object_is_422(stack: Stack, raw: bytes) -> None:
    answer = await call(stack, "POST", "/v1/messages", data=raw, headers={"Content-Type": "application/json"})
    problem(answer, 422)


async def test_brand_missing_without_default_brand_is_422(redis_url: str, redis: Redis) -> None:
    token = "tok-nodefault-5566778899aabbcc"
    clients = [*CLIENTS, {"name": "nodefault", "token_sha256": token_sha256(token), "brands": [1, 2]}]
    async with Stack(redis_url, env={"SMSGW_CLIENTS": json.dumps(clients)}, worker=False) as stack:
        headers = {"Authorization": f"Bearer {token}"}
        answer = await call(
            stack, "POST", "/v1/messages", who=None, headers=headers, json={"to": [ONE], "text": "hello"}
        )
        errors = fields_of(problem(answer, 422))
        assert "brand_id" in errors
        assert "default brand" in errors["brand_id"]
        assert await message_keys(redis) == []
        accepted = await call(
            stack,
            "POST",
            "/v1/messages",
            who=None,
            headers=headers,
            json={"to": [ONE], "text": "hello", "brand_id": 2},
        )
        assert accepted.status == 202
        assert accepted.json()["brand_id"] == 2


async def test_otp_limit_counts_after_normalising_and_deduplicating(stack: Stack) -> None:
    ten = numbers(10)
    to = [*ten, "+" + ten[0], "00" + ten[1], f"{ten[2][:3]} ({ten[2][3:6]}) {ten[2][6:9]}-{ten[2][9:]}"]
    answer = await call(
        stack, "POST", "/v1/messages", json={"to": to, "text": "code 1234", "priority": "otp"}
    )
    assert answer.status == 202, answer.text
    assert [r["number"] for r in answer.json()["recipients"]] == ten


# --- 429 ------------------------------------------------------------------------------------------


async def test_client_over_its_rate_is_429_with_retry_after(stack: Stack, redis: Redis) -> None:
    statuses = []
    for _ in range(3):
        answer = await call(stack, "POST", "/v1/messages", who="limited", json={"to": [ONE], "text": "hi"})
        statuses.append(answer.status)
    assert statuses == [202, 202, 429]
    body = problem(answer, 429, "rate-limited")
    assert "2 requests per second" in body["detail"]
    retry_after = int(answer.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    assert len(await message_keys(redis)) == 2
    # Other clients are not limited by it, and the limited client is served again after Retry-After.
    other = await call(stack, "POST", "/v1/messages", who="auth", json={"to": [ONE], "text": "hi"})
    assert other.status == 202
    await asyncio.sleep(retry_after)
    again = await call(stack, "POST", "/v1/messages", who="limited", json={"to": [ONE], "text": "hi"})
    assert again.status == 202, again.text


async def test_rate_limit_applies_to_reads_too(stack: Stack) -> None:
    statuses = [(await call(stack, "GET", "/v1/messages/msg_nope", who="limited")).status for _ in range(3)]
    assert statuses == [404, 404, 429]


# --- 503 ------------------------------------------------------------------------------------------


async def test_redis_down_is_503_fast_and_recovers_by_itself(own_redis: EmbeddedRedis) -> None:
    async with Stack(own_redis.url, worker=False) as stack:
        first = await call(stack, "POST", "/v1/messages", json={"to": [ONE], "text": "before"})
        assert first.status == 202
        own_redis.stop()
        started = time.monotonic()
        down = await call(stack, "POST", "/v1/messages", json={"to": [ONE], "text": "while down"})
        assert time.monotonic() - started < 2.0
        body = problem(down, 503, "unavailable")
        assert "nothing was accepted" in body["detail"]
        assert body["nothing_changed"] is True  # proven: the accept never reached Redis
        assert down.headers["Retry-After"].isdigit()
        keyed = await call(
            stack,
            "POST",
            "/v1/messages",
            json={"to": [ONE], "text": "while down"},
            headers={"Idempotency-Key": "k-down"},
        )
        # True of this request only: an earlier one with the key may be stored, which the same key finds.
        assert "retry later with the same Idempotency-Key" in problem(keyed, 503)["detail"]
        problem(await call(stack, "GET", f"/v1/messages/{first.json()['id']}"), 503)
        problem(await call(stack, "GET", "/readyz", who=None), 503)
        # uBill must retry a callback it could not hand over (any non-2xx), and the facade says so its way.
        callback = await call(
            stack,
            "GET",
            "/callbacks/ubill",
            who=None,
            params={
                "key": CALLBACK_KEY,
                "smsID": "1",
                "number": ONE,
                "statusID": "1",
                "date": "2030-01-01 10:00:00",
            },
        )
        assert callback.status == 503
        facade = await call(
            stack,
            "GET",
            "/v1/sms/send",
            who=None,
            params={"key": TOKENS["auth"], "brandID": "1", "numbers": ONE, "text": "while down"},
        )
        assert facade.status == 503
        assert facade.json()["statusID"] == 99

        own_redis.start()
        again = await call(stack, "POST", "/v1/messages", json={"to": [ONE], "text": "after"})
        assert again.status == 202, again.text
        redis = Redis.from_url(own_redis.url, decode_responses=True)
        try:
            kept = await message_keys(redis)
            # The message accepted before the outage survived (AOF); the refused ones left nothing behind.
            assert kept == sorted([keys.message(first.json()["id"]), keys.message(again.json()["id"])])
            for key in kept:
                assert (await stored(redis, key.removeprefix(keys.message("")))).text != "while down"
            queued = await redis.zrange(keys.lane_queue("transactional"), 0, -1)
            assert sorted(queued) == sorted([f"{first.json()['id']}:0", f"{again.json()['id']}:0"])
            assert [k async for k in redis.scan_iter(match="smsgw:idem:*")] == []
        finally:
            await redis.aclose()
        # The idempotency key used during the outage was not left reserved.
        retried = await call(
            stack,
            "POST",
            "/v1/messages",
            json={"to": [ONE], "text": "while down"},
            headers={"Idempotency-Key": "k-down"},
        )
        assert retried.status == 202, retried.text


async def test_503_after_a_stalled_redis_accepted_nothing(own_redis: EmbeddedRedis) -> None:
    async with Stack(own_redis.url, env={"SMSGW_REDIS_TIMEOUT": "0.3"}, worker=False) as stack:
        assert (await call(stack, "POST", "/v1/messages", json={"to": [ONE], "text": "warm"})).status == 202
        pid = int(own_redis.pidfile.read_text())
        os.kill(pid, signal.SIGSTOP)  # a Redis that stops answering: a long fsync, a partition, a failover
        try:
            stalled = await call(stack, "POST", "/v1/messages", json={"to": [ONE], "text": "stalled"})
        finally:
            os.kill(pid, signal.SIGCONT)
        body = problem(stalled, 503)
        # Redis stayed stopped while the gateway tried to find out: it cannot say (outcome-unknown), or it
        # says nothing was accepted. Either way the late script must not write (its deadline has passed).
        assert body["type"].endswith("/outcome-unknown") or "nothing was accepted" in body["detail"]
        redis = Redis.from_url(own_redis.url, decode_responses=True)
        try:
            await asyncio.sleep(0.2)
            texts = [
                (await stored(redis, key.removeprefix(keys.message("")))).text
                for key in await message_keys(redis)
            ]
        finally:
            await redis.aclose()
        assert texts == ["warm"], "the message refused with 503 was accepted after all"


# --- 202 and the resource -------------------------------------------------------------------------


async def test_accepted_message_resource(stack: Stack) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    answer = await call(
        stack,
        "POST",
        "/v1/messages",
        json={
            "to": ["+995 511 19-42-42", "00995511194243", "(995) 511194244", "995511194242", "511 19 42 45"],
            "text": "Your code is 1234",
            "reference": "order-7",
        },
    )
    assert answer.status == 202, answer.text
    assert answer.content_type == "application/json"
    body = answer.json()
    assert set(body) == RESOURCE_FIELDS
    assert body["id"].startswith("msg_")
    assert body["status"] == "queued"
    assert body["priority"] == "transactional"
    assert body["brand_id"] == 1
    assert body["reference"] == "order-7"
    assert (body["segments"], body["encoding"]) == (1, "GSM-7")
    assert body["send_at"] is None
    created = parse_time(body["created_at"])
    assert before <= created <= datetime.now(UTC) + timedelta(seconds=1)
    assert parse_time(body["expires_at"]) - created == timedelta(seconds=86_400)
    assert [r["number"] for r in body["recipients"]] == [
        "995511194242",
        "995511194243",
        "995511194244",
        "995511194245",
    ]
    for recipient in body["recipients"]:
        assert set(recipient) == RECIPIENT_FIELDS
        assert recipient["status"] == "queued"
        assert recipient["provider_sms_id"] is None
        assert recipient["error"] is None
        assert parse_time(recipient["updated_at"]) == created
    assert body["counts"] == {"queued": 4}
    got = await call(stack, "GET", f"/v1/messages/{body['id']}")
    assert got.status == 200
    assert got.json() == body


async def test_a_single_number_string_is_accepted(stack: Stack) -> None:
    answer = await call(stack, "POST", "/v1/messages", json={"to": "+995 511 194 242", "text": "hi"})
    assert answer.status == 202, answer.text
    assert [r["number"] for r in answer.json()["recipients"]] == [ONE]


async def test_otp_defaults_to_300_seconds_validity(stack: Stack, redis: Redis) -> None:
    answer = await call(
        stack, "POST", "/v1/messages", json={"to": [ONE], "text": "code 1234", "priority": "otp"}
    )
    body = answer.json()
    assert answer.status == 202
    assert body["priority"] == "otp"
    assert parse_time(body["expires_at"]) - parse_time(body["created_at"]) == timedelta(seconds=300)
    assert await redis.zrange(keys.lane_queue("otp"), 0, -1) == [f"{body['id']}:0"]
    assert await redis.zcard(keys.lane_queue("transactional")) == 0


async def test_explicit_validity_and_bulk_lane(stack: Stack, redis: Redis) -> None:
    answer = await call(
        stack,
        "POST",
        "/v1/messages",
        json={"to": [ONE], "text": "sale", "priority": "bulk", "validity": 600, "stop_list": False},
    )
    body = answer.json()
    assert answer.status == 202
    assert body["priority"] == "bulk"
    assert parse_time(body["expires_at"]) - parse_time(body["created_at"]) == timedelta(seconds=600)
    assert await redis.zrange(keys.lane_queue("bulk"), 0, -1) == [f"{body['id']}:0"]
    assert not (await stored(redis, body["id"])).meta.stop_list


async def test_scheduled_message(stack: Stack, redis: Redis) -> None:
    send_at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    local = send_at.astimezone(timezone(timedelta(hours=4))).isoformat()
    answer = await call(stack, "POST", "/v1/messages", json={"to": [ONE], "text": "later", "send_at": local})
    body = answer.json()
    assert answer.status == 202, answer.text
    assert body["status"] == "scheduled"
    assert body["counts"] == {"scheduled": 1}
    assert body["recipients"][0]["status"] == "scheduled"
    assert parse_time(body["send_at"]) == send_at
    assert parse_time(body["expires_at"]) - send_at == timedelta(seconds=86_400)
    score = await redis.zscore(keys.lane_queue("transactional"), f"{body['id']}:0")
    assert score == send_at.timestamp() * 1000


@pytest.mark.parametrize(
    ("text", "segments", "encoding"),
    [
        ("x" * 160, 1, "GSM-7"),
        ("x" * 161, 2, "GSM-7"),
        ("€" * 80, 1, "GSM-7"),
        ("€" * 81, 2, "GSM-7"),
        ("x" * 1600, 11, "GSM-7"),
        ("გამარჯობა, თქვენი კოდია 1234", 1, "UCS-2"),
        ("გ" * 71, 2, "UCS-2"),
        ("😀" * 35, 1, "UCS-2"),
        ("😀" * 36, 2, "UCS-2"),
    ],
)
async def test_segments_and_encoding(stack: Stack, text: str, segments: int, encoding: str) -> None:
    answer = await call(stack, "POST", "/v1/messages", json={"to": [ONE], "text": text})
    assert answer.status == 202, answer.text
    assert (answer.json()["segments"], answer.json()["encoding"]) == (segments, encoding)


async def test_redis_holds_the_message_and_a_lane_entry_per_unit(stack: Stack, redis: Redis) -> None:
    to = numbers(150)
    answer = await call(stack, "POST", "/v1/messages", json={"to": to, "text": "hello all"})
    assert answer.status == 202, answer.text
    message_id = answer.json()["id"]
    view = await stored(redis, message_id)
    assert view.meta.client == "auth-service"
    assert view.meta.lane == "transactional"
    assert view.text == "hello all"
    assert view.recipient_count == 150
    assert [len(unit) for unit in view.unit_numbers] == [100, 50]  # SMSGW_BATCH_SIZE per uBill call
    assert view.numbers() == to
    assert {r.status for r in view.recipients()} == {"queued"}
    queued = await redis.zrange(keys.lane_queue("transactional"), 0, -1)
    assert sorted(queued) == sorted(f"{message_id}:{k}" for k in range(len(view.units)))
    assert await redis.ttl(keys.message(message_id)) > 86_400


async def test_ten_thousand_numbers_are_accepted(stack: Stack, redis: Redis) -> None:
    to = numbers(10_000)
    answer = await call(stack, "POST", "/v1/messages", json={"to": to, "text": "hello all"})
    assert answer.status == 202, answer.text
    body = answer.json()
    assert body["counts"] == {"queued": 10_000}
    view = await stored(redis, body["id"])
    assert await redis.zcard(keys.lane_queue("transactional")) == len(view.units) == 100


# --- GET ------------------------------------------------------------------------------------------


async def test_get_unknown_is_404(stack: Stack) -> None:
    answer = await call(stack, "GET", "/v1/messages/msg_0000000000000000000000000000")
    body = problem(answer, 404, "not-found")
    assert "msg_0000000000000000000000000000" in body["detail"]


async def test_get_another_clients_message_is_404(stack: Stack) -> None:
    created = await call(stack, "POST", "/v1/messages", json={"to": [ONE], "text": "mine"})
    message_id = created.json()["id"]
    theirs = problem(await call(stack, "GET", f"/v1/messages/{message_id}", who="shop"), 404, "not-found")
    unknown = problem(await call(stack, "GET", f"/v1/messages/{message_id}x", who="shop"), 404, "not-found")
    assert theirs["title"] == unknown["title"]
    assert "mine" not in json.dumps(theirs)
    assert ONE not in json.dumps(theirs)
    assert (await call(stack, "GET", f"/v1/messages/{message_id}")).status == 200


# --- DELETE ---------------------------------------------------------------------------------------


async def test_cancel_queued_then_nothing_left_is_409(stack: Stack, redis: Redis) -> None:
    sent = await call(stack, "POST", "/v1/messages", json={"to": [ONE, "995511194243"], "text": "x"})
    created = sent.json()
    answer = await call(stack, "DELETE", f"/v1/messages/{created['id']}")
    assert answer.status == 200, answer.text
    body = answer.json()
    assert set(body) == RESOURCE_FIELDS
    assert body["status"] == "cancelled"
    assert body["counts"] == {"cancelled": 2}
    assert all(r["status"] == "cancelled" for r in body["recipients"])
    assert await redis.zcard(keys.lane_queue("transactional")) == 0
    second = problem(await call(stack, "DELETE", f"/v1/messages/{created['id']}"), 409, "conflict")
    assert "nothing to cancel" in second["detail"]
    assert (await call(stack, "GET", f"/v1/messages/{created['id']}")).json()["status"] == "cancelled"


async def test_cancel_scheduled(stack: Stack) -> None:
    created = (
        await call(
            stack,
            "POST",
            "/v1/messages",
            json={"to": [ONE], "text": "later", "send_at": iso_in(timedelta(days=2))},
        )
    ).json()
    assert created["status"] == "scheduled"
    answer = await call(stack, "DELETE", f"/v1/messages/{created['id']}")
    assert answer.status == 200
    assert answer.json()["counts"] == {"cancelled": 1}


async def test_cancel_another_clients_message_is_404(stack: Stack, redis: Redis) -> None:
    created = (await call(stack, "POST", "/v1/messages", json={"to": [ONE], "text": "x"})).json()
    problem(await call(stack, "DELETE", f"/v1/messages/{created['id']}", who="shop"), 404, "not-found")
    problem(await call(stack, "DELETE", "/v1/messages/msg_unknown"), 404, "not-found")
    assert (await call(stack, "GET", f"/v1/messages/{created['id']}")).json()["status"] == "queued"
    assert await redis.zcard(keys.lane_queue("transactional")) == 1


async def test_cancel_after_delivery_is_409(live: Stack) -> None:
    created = (await call(live, "POST", "/v1/messages", json={"to": [ONE], "text": "x"})).json()
    await live.wait_status(created["id"], "delivered")
    problem(await call(live, "DELETE", f"/v1/messages/{created['id']}"), 409, "conflict")
    assert (await call(live, "GET", f"/v1/messages/{created['id']}")).json()["status"] == "delivered"


async def test_unknown_route_and_method_are_problems(stack: Stack) -> None:
    problem(await call(stack, "GET", "/v1/nothing-here"), 404)
    problem(await call(stack, "GET", "/nothing-here", who=None), 404)
    answer = await call(stack, "PUT", "/v1/messages", json={})
    problem(answer, 405)


# --- large messages: Prefer: return=minimal and paging ---------------------------------------------------


async def test_prefer_minimal_answers_counts_without_recipients(stack: Stack) -> None:
    to = numbers(300)
    minimal = {"Prefer": "return=minimal"}
    answer = await call(stack, "POST", "/v1/messages", json={"to": to, "text": "big"}, headers=minimal)
    assert answer.status == 202, answer.text
    body = answer.json()
    assert "recipients" not in body and body["counts"] == {"queued": 300}
    assert answer.headers["Preference-Applied"] == "return=minimal"
    assert len(answer.text) < 1_000  # the answer no longer grows with the recipients
    got = await call(stack, "GET", f"/v1/messages/{body['id']}", headers=minimal)
    assert "recipients" not in got.json() and got.json()["status"] == "queued"
    full = await call(stack, "GET", f"/v1/messages/{body['id']}")
    assert len(full.json()["recipients"]) == 300 and "Preference-Applied" not in full.headers


async def test_recipients_are_paged_in_request_order_and_filtered_by_status(stack: Stack) -> None:
    to = numbers(250)
    created = (await call(stack, "POST", "/v1/messages", json={"to": to, "text": "page"})).json()
    path = f"/v1/messages/{created['id']}/recipients"
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        page = await call(stack, "GET", path, params=params)
        assert page.status == 200, page.text
        seen += [r["number"] for r in page.json()["recipients"]]
        cursor = page.json()["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert seen == to and pages == 3
    # Cancel, then page by status: statuses are read when each page is asked for.
    assert (await call(stack, "DELETE", f"/v1/messages/{created['id']}")).status == 200
    cancelled = await call(stack, "GET", path, params={"status": "cancelled", "limit": "10000"})
    assert len(cancelled.json()["recipients"]) == 250 and cancelled.json()["next_cursor"] is None
    queued = await call(stack, "GET", path, params={"status": "queued"})
    assert queued.json() == {"recipients": [], "next_cursor": None}


async def test_bad_paging_parameters_are_422_and_other_clients_get_404(stack: Stack) -> None:
    created = (await call(stack, "POST", "/v1/messages", json={"to": [ONE], "text": "x"})).json()
    path = f"/v1/messages/{created['id']}/recipients"
    for params, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "lost"}, "status"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ):
        assert field in fields_of(problem(await call(stack, "GET", path, params=params), 422, "validation"))
    problem(await call(stack, "GET", path, who="shop"), 404, "not-found")
