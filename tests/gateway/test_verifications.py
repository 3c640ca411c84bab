"""``/v1/verifications`` over real HTTP, real Redis, the real worker and the sandbox (uBill).

The code is only ever learnt the way a user learns it: from the SMS the sandbox received, which proves the
worker opened the sealed text right before the uBill call.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from smsgw.clock import now_ms
from smsgw.store import keys
from smsgw.store.verifications import keys as vkeys
from tests.gateway.conftest import call, fields_of, parse_time, problem
from tests.harness import Stack, eventually, stored
from tests.verify.support import check, code_sent_to, get, resend, start, started, texts_to, wrong

NUMBER = "995591000901"
RESOURCE_FIELDS = {"id", "to", "status", "expires_at", "sends", "attempts", "message_id", "reference"}
EVENT_FIELDS = {
    "kind",
    "verification_id",
    "client",
    "reference",
    "number",
    "status",
    "attempts",
    "occurred_at",
}


async def verification_events(redis: Redis, client: str = "auth-service") -> list[dict[str, Any]]:
    entries = await redis.xrange(keys.client_stream(client))
    return [json.loads(e["event"]) for _, e in entries if e.get("kind") == "verification"]


async def test_start_sends_the_code_on_the_otp_lane_and_a_check_approves(live: Stack, redis: Redis) -> None:
    before = time.time()
    answer = await start(live, {"to": "+995 591 00-09-01", "reference": "signup-7"})
    assert answer.status == 201, answer.text
    body = answer.json()
    assert set(body) == RESOURCE_FIELDS
    assert body["id"].startswith("ver_")
    assert body["to"] == NUMBER
    assert (body["status"], body["sends"], body["attempts"], body["reference"]) == (
        "pending",
        1,
        0,
        "signup-7",
    )
    assert 595 <= parse_time(body["expires_at"]).timestamp() - before <= 605  # default ttl 600 s

    code = await code_sent_to(live, NUMBER)
    assert re.fullmatch(r"\d{6}", code)  # default code_length 6
    (sms,) = [s for s in await live.sandbox_sends() if NUMBER in s["numbers"]]
    assert sms["otp"] is True
    assert sms["stop_list"] is False
    assert "Do not share" in sms["text"]

    message = await call(live, "GET", f"/v1/messages/{body['message_id']}")
    assert message.status == 200
    assert message.json()["priority"] == "otp"
    assert message.json()["reference"] == body["id"]
    assert "text" not in message.json()
    assert code not in message.text
    # The SMS is valid for the verification's remaining time.
    assert abs(parse_time(message.json()["expires_at"]) - parse_time(body["expires_at"])).total_seconds() < 1

    miss = await check(live, body["id"], wrong(code))
    assert (miss.status, miss.json()) == (200, {"status": "pending", "attempts": 1})
    hit = await check(live, body["id"], code)
    assert (hit.status, hit.json()) == (200, {"status": "approved", "attempts": 2})
    again = await check(live, body["id"], code)
    problem(again, 409, "conflict")
    assert code not in again.text
    now = await get(live, body["id"])
    assert now.json() == {**body, "status": "approved", "attempts": 2}

    (event,) = await verification_events(redis)
    assert set(event) == EVENT_FIELDS
    assert event["kind"] == "verification"
    assert event["verification_id"] == body["id"]
    assert (event["client"], event["reference"], event["number"]) == ("auth-service", "signup-7", NUMBER)
    assert (event["status"], event["attempts"]) == ("approved", 2)
    parse_time(event["occurred_at"])
    # The sealed code is gone once the verification is final.
    assert "code" not in await redis.hgetall(vkeys.verification(body["id"]))


async def test_options_code_length_ttl_locale_and_brand_name(redis_url: str) -> None:
    env = {"SMSGW_VERIFY_BRAND_NAMES": '{"2": "Acme Bank"}'}
    async with Stack(redis_url, env=env) as live:
        before = time.time()
        body = await started(
            live, {"to": NUMBER, "code_length": 10, "ttl": 60, "locale": "ka", "brand_id": 2}
        )
        assert 59 <= parse_time(body["expires_at"]).timestamp() - before <= 61
        assert body["reference"] is None
        (text,) = await texts_to(live, NUMBER)
        assert re.search(r"(?<!\d)\d{10}(?!\d)", text)
        assert "Acme Bank" in text
        assert "არავის გაუზიაროთ" in text  # "do not share it with anyone"
        (sms,) = await live.sandbox_sends()
        assert sms["brand_id"] == 2
        other = await started(live, {"to": "995591000902", "code_length": 4})  # brand 1: no name known
        (text,) = await texts_to(live, "995591000902")
        assert text.startswith(await code_sent_to(live, "995591000902"))
        assert "is your verification code" in text
        assert other["status"] == "pending"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "to"),
        ({"to": ["995591000901"]}, "to"),
        ({"to": "12"}, "to"),
        ({"to": "+1 202 555 0100"}, "to"),  # not an allowed country
        ({"to": NUMBER, "code_length": 3}, "code_length"),
        ({"to": NUMBER, "code_length": 11}, "code_length"),
        ({"to": NUMBER, "code_length": "6"}, "code_length"),
        ({"to": NUMBER, "ttl": 59}, "ttl"),
        ({"to": NUMBER, "ttl": 3601}, "ttl"),
        ({"to": NUMBER, "ttl": True}, "ttl"),
        ({"to": NUMBER, "locale": "fr"}, "locale"),
        ({"to": NUMBER, "reference": "x" * 129}, "reference"),
        ({"to": NUMBER, "brand_id": "1"}, "brand_id"),
        ({"to": NUMBER, "text": "my own"}, "text"),
    ],
)
async def test_each_rule_is_422(stack: Stack, redis: Redis, body: dict[str, Any], field: str) -> None:
    answer = await start(stack, body)
    assert field in fields_of(problem(answer, 422, "validation"))
    assert not [k async for k in redis.scan_iter(match=vkeys.verification("*"))]


async def test_bad_bodies_permissions_and_tokens(stack: Stack) -> None:
    problem(
        await call(
            stack, "POST", "/v1/verifications", data=b"[1", headers={"Content-Type": "application/json"}
        ),
        400,
    )
    problem(
        await call(stack, "POST", "/v1/verifications", data=b"x", headers={"Content-Type": "text/plain"}), 415
    )
    problem(await start(stack, [NUMBER]), 422)  # type: ignore[arg-type]
    problem(await start(stack, {"to": NUMBER, "brand_id": 3}), 403, "forbidden")
    problem(await start(stack, {"to": NUMBER}, who="shop"), 403, "forbidden")  # no OTP permission
    problem(await call(stack, "GET", "/v1/verifications/ver_x", who="shop"), 403, "forbidden")
    problem(await start(stack, {"to": NUMBER}, key=" "), 400, "bad-request")
    answer = await call(stack, "POST", "/v1/verifications", who=None, json={"to": NUMBER})
    problem(answer, 401, "unauthorized")


async def test_check_body_rules_do_not_count_as_attempts(stack: Stack) -> None:
    body = await started(stack, {"to": NUMBER})
    path = f"/v1/verifications/{body['id']}/check"
    for bad in ({}, {"code": 123456}, {"code": ""}, {"code": "1" * 65}, {"code": "1", "extra": 1}, [1]):
        problem(await call(stack, "POST", path, json=bad), 422, "validation")
    assert (await get(stack, body["id"])).json()["attempts"] == 0
    assert (await check(stack, body["id"], "not-a-number")).json() == {"status": "pending", "attempts": 1}


async def test_attempts_limit_fails_and_then_checks_count_nothing(live: Stack, redis: Redis) -> None:
    body = await started(live, {"to": NUMBER})
    code = await code_sent_to(live, NUMBER)
    answers = [(await check(live, body["id"], wrong(code))).json() for _ in range(5)]
    assert answers == [{"status": "pending", "attempts": n} for n in range(1, 5)] + [
        {"status": "failed", "attempts": 5}
    ]
    # Failed: its status, nothing counted, not even the right code.
    assert (await check(live, body["id"], code)).json() == {"status": "failed", "attempts": 5}
    assert (await get(live, body["id"])).json()["status"] == "failed"
    problem(await resend(live, body["id"]), 409, "conflict")
    assert [(e["status"], e["attempts"]) for e in await verification_events(redis)] == [("failed", 5)]


async def test_resend_carries_the_same_code_with_cooldown_and_sends_limit(
    redis_url: str, redis: Redis
) -> None:
    async with Stack(
        redis_url, env={"SMSGW_VERIFY_RESEND_COOLDOWN": "1", "SMSGW_VERIFY_MAX_SENDS": "3"}
    ) as live:
        body = await started(live, {"to": NUMBER})
        early = await resend(live, body["id"])
        problem(early, 429, "rate-limited")
        assert early.headers["Retry-After"] == "1"
        await asyncio.sleep(1.05)
        again = await resend(live, body["id"])
        assert again.status == 200, again.text
        assert set(again.json()) == RESOURCE_FIELDS
        assert again.json()["sends"] == 2
        assert again.json()["message_id"] != body["message_id"]
        await asyncio.sleep(1.05)
        assert (await resend(live, body["id"])).json()["sends"] == 3
        await asyncio.sleep(1.05)
        over = await resend(live, body["id"])
        problem(over, 429, "rate-limited")
        assert 590 <= int(over.headers["Retry-After"]) <= 600  # until the verification expires
        texts = await texts_to(live, NUMBER, 3)
        codes = {await code_sent_to(live, NUMBER, n) for n in (1, 2, 3)}
        assert len(texts) == 3
        assert len(codes) == 1  # the same code every time
        assert (await check(live, body["id"], codes.pop())).json()["status"] == "approved"
        problem(await resend(live, body["id"]), 409, "conflict")
        latest = await get(live, body["id"])
        assert latest.json()["sends"] == 3
        assert (
            latest.json()["message_id"]
            == (await call(live, "GET", f"/v1/messages/{latest.json()['message_id']}")).json()["id"]
        )


async def test_default_resend_cooldown_is_30_seconds(stack: Stack) -> None:
    body = await started(stack, {"to": NUMBER})
    answer = await resend(stack, body["id"])
    problem(answer, 429, "rate-limited")
    assert 29 <= int(answer.headers["Retry-After"]) <= 30


async def expire_now(redis: Redis, verification_id: str) -> None:
    """Move a verification's expiry into the past, as time would (ttl is at least 60 s)."""
    past = now_ms() - 1
    await redis.hset(vkeys.verification(verification_id), "ea", str(past))
    await redis.zadd(vkeys.EXPIRIES, {verification_id: past})


async def test_expiry_is_published_by_the_sweep_and_counts_nothing(redis_url: str, redis: Redis) -> None:
    async with Stack(redis_url, env={"SMSGW_VERIFY_SWEEP_INTERVAL": "0.1"}, worker=False) as stack:
        body = await started(stack, {"to": NUMBER, "reference": "r-1"})
        kept = await started(stack, {"to": "995591000902"})
        await expire_now(redis, body["id"])

        async def published() -> bool:
            return bool(await verification_events(redis))

        await eventually(published, timeout=5)
        (event,) = await verification_events(redis)
        assert (event["verification_id"], event["status"], event["attempts"]) == (body["id"], "expired", 0)
        assert (await get(stack, body["id"])).json()["status"] == "expired"
        assert (await check(stack, body["id"], "123456")).json() == {"status": "expired", "attempts": 0}
        problem(await resend(stack, body["id"]), 409, "conflict")
        assert await redis.zrange(vkeys.EXPIRIES, 0, -1) == [kept["id"]]  # trimmed as it goes
        assert "code" not in await redis.hgetall(vkeys.verification(body["id"]))
        assert len(await verification_events(redis)) == 1


async def test_a_check_after_expiry_expires_it_at_once(stack: Stack, redis: Redis) -> None:
    body = await started(stack, {"to": NUMBER})
    await expire_now(redis, body["id"])
    assert (await get(stack, body["id"])).json()["status"] == "expired"  # by time, before any sweep
    assert (await check(stack, body["id"], "000000")).json() == {"status": "expired", "attempts": 0}
    assert [e["status"] for e in await verification_events(redis)] == ["expired"]


async def test_other_clients_and_unknown_ids_are_404(stack: Stack) -> None:
    body = await started(stack, {"to": NUMBER})
    for who in ("ops",):
        problem(await get(stack, body["id"], who=who), 404, "not-found")
        problem(await check(stack, body["id"], "123456", who=who), 404, "not-found")
        problem(await resend(stack, body["id"], who=who), 404, "not-found")
    problem(await get(stack, "ver_0000"), 404, "not-found")
    problem(await check(stack, "ver_0000", "1"), 404, "not-found")
    problem(await resend(stack, "ver_0000"), 404, "not-found")
    # The other client's tries counted nothing.
    assert (await get(stack, body["id"])).json()["attempts"] == 0


async def test_idempotency_key_replays_per_client_and_per_endpoint(live: Stack, redis: Redis) -> None:
    first = await start(live, {"to": NUMBER, "reference": "a"}, key="signup-1")
    assert first.status == 201
    same = await call(
        live,
        "POST",
        "/v1/verifications",
        data=b'{ "reference" : "a", "to":"995591000901" }',
        headers={"Idempotency-Key": "signup-1", "Content-Type": "application/json"},
    )
    assert (same.status, same.json()["id"]) == (201, first.json()["id"])
    other = await start(live, {"to": NUMBER, "reference": "b"}, key="signup-1")
    assert "Idempotency-Key" in fields_of(problem(other, 422, "validation"))
    # Another client's key space, and another endpoint's: the same key starts something new.
    theirs = await start(live, {"to": "995591000902", "reference": "a"}, who="ops", key="signup-1")
    assert theirs.status == 201
    assert theirs.json()["id"] != first.json()["id"]
    message = await call(
        live,
        "POST",
        "/v1/messages",
        json={"to": "995591000903", "text": "hi"},
        headers={"Idempotency-Key": "signup-1"},
    )
    assert message.status == 202
    await texts_to(live, "995591000903")
    await asyncio.sleep(0.2)
    assert len(await texts_to(live, NUMBER)) == 1  # the replay sent nothing


async def test_concurrent_duplicates_start_one_verification(live: Stack, redis: Redis) -> None:
    answers = await asyncio.gather(*(start(live, {"to": NUMBER}, key="twice") for _ in range(4)))
    assert {a.status for a in answers} <= {201, 409}
    assert len({a.json()["id"] for a in answers if a.status == 201}) == 1
    assert len([k async for k in redis.scan_iter(match=vkeys.verification("ver_*"))]) == 1
    await texts_to(live, NUMBER)
    await asyncio.sleep(0.2)
    assert len(await texts_to(live, NUMBER)) == 1


async def test_events_stream_frames_verification_events_by_kind(live: Stack) -> None:
    body = await started(live, {"to": NUMBER})
    code = await code_sent_to(live, NUMBER)
    assert (await check(live, body["id"], code)).json()["status"] == "approved"
    frames: list[tuple[str, dict[str, Any]]] = []
    async with live.http.get(
        f"{live.url}/v1/events", params={"last_event_id": "0"}, headers=live.auth()
    ) as response:
        kind = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                frames.append((kind, json.loads(line.removeprefix("data: "))))
                if kind == "verification":
                    break
    assert {kind for kind, _ in frames} == {"status", "verification"}
    assert all("message_id" in data for kind, data in frames if kind == "status")
    (verification,) = [data for kind, data in frames if kind == "verification"]
    assert (verification["verification_id"], verification["status"]) == (body["id"], "approved")
    assert code not in json.dumps([data for _, data in frames])


async def test_a_dead_lettered_verification_sms_replays_with_its_code(redis_url: str) -> None:
    env = {"SMSGW_MAX_ATTEMPTS": "1"}
    async with Stack(redis_url, env=env, sandbox={"error_rate": "1"}) as live:
        body = await started(live, {"to": NUMBER}, who="ops")

        async def dead() -> bool:
            answer = await call(live, "GET", "/v1/admin/dead-letters", who="ops")
            return bool(answer.json()["dead_letters"])

        await eventually(dead, timeout=10)
        await live.sandbox_patch({"error_rate": 0})
        replay = await call(live, "POST", f"/v1/admin/dead-letters/{body['message_id']}:0/replay", who="ops")
        assert replay.status == 202, replay.text
        code = await code_sent_to(live, NUMBER)
        assert (await check(live, body["id"], code, who="ops")).json()["status"] == "approved"


async def test_codes_sealed_under_a_previous_secret_still_verify(redis_url: str, redis: Redis) -> None:
    old, new = "old-secret-0123456789abcdef", "new-secret-fedcba9876543210"
    async with Stack(redis_url, env={"SMSGW_VERIFY_SECRETS": old}, worker=False) as before:
        body = await started(before, {"to": NUMBER})  # its SMS waits in the queue, sealed with the old secret
    async with Stack(redis_url, env={"SMSGW_VERIFY_SECRETS": f"{new},{old}"}) as after:
        code = await code_sent_to(after, NUMBER)  # the worker opened the old seal
        fresh = await started(after, {"to": "995591000902"})
        assert (await check(after, body["id"], code)).json()["status"] == "approved"
        fresh_code = await code_sent_to(after, "995591000902")
        assert (await check(after, fresh["id"], fresh_code)).json()["status"] == "approved"
        seals = {
            (await redis.hget(keys.message(m), "t") or "").split(":", 2)[-1].split(".")[0]
            for m in (body["message_id"], fresh["message_id"])
        }
        assert len(seals) == 2  # two key ids: the old one and the new one


async def test_a_callers_text_is_never_taken_for_a_sealed_one(stack: Stack, redis: Redis) -> None:
    """Sealing is a flag of the message, not a marker in its text: any text a caller sends goes out as is."""
    text = "\x00smsgw-sealed:abc.def"
    answer = await call(stack, "POST", "/v1/messages", json={"to": NUMBER, "text": text})
    assert answer.status == 202, answer.text
    view = await stored(redis, answer.json()["id"])
    assert view.text == text and not view.sealed
