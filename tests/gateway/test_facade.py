"""The uBill-compatible facade, called exactly as an unmodified uBill client library calls uBill."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from smsgw.store import keys
from smsgw.store.records import MessageView
from smsgw.ubill import SEND_TIME_FORMAT, format_local
from tests.gateway.conftest import Answer, assert_no_secrets
from tests.harness import TOKENS, Stack, eventually, stored

A, B = "995511194242", "995511194243"
KEY = TOKENS["auth"]


async def ubill(stack: Stack, method: str, path: str, **kwargs: Any) -> Answer:
    """A plain request with no gateway-specific header: what a uBill SDK sends to its base URL + path."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, stack.url + "/v1" + path, **kwargs) as response,
    ):
        answer = Answer(response.status, response.headers, response.content_type, await response.text())
    assert_no_secrets(answer)
    assert answer.content_type == "application/json", answer.content_type
    return answer


async def message_of(redis: Redis, sms_id: int) -> MessageView:
    message_id = await redis.get(keys.facade(sms_id))
    assert message_id
    return await stored(redis, message_id)


def accepted(answer: Answer) -> int:
    assert answer.status == 200, answer.text
    body = answer.json()
    assert set(body) == {"statusID", "smsID", "message"}
    assert body["statusID"] == 0
    assert isinstance(body["smsID"], int)
    assert not isinstance(body["smsID"], bool)
    assert isinstance(body["message"], str)
    return int(body["smsID"])


def refused(answer: Answer, status_id: int, http_status: int = 200) -> None:
    assert answer.status == http_status, answer.text
    body = answer.json()
    assert body["statusID"] == status_id, body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert "smsID" not in body


# --- send -----------------------------------------------------------------------------------------


async def test_get_send_with_key_in_query(stack: Stack, redis: Redis) -> None:
    answer = await ubill(
        stack,
        "GET",
        "/sms/send",
        params={"key": KEY, "brandID": "2", "numbers": f"{A},{B},+{A}", "text": "Hello from uBill client"},
    )
    fields = await message_of(redis, accepted(answer))
    assert fields.meta.client == "auth-service"
    assert fields.meta.lane == "transactional"
    assert fields.meta.brand_id == 2
    assert fields.text == "Hello from uBill client"
    assert fields.meta.stop_list
    assert fields.unit_numbers == ((A, B),)
    assert await redis.zrange(keys.lane_queue("transactional"), 0, -1) == [f"{fields.meta.id}:0"]


async def test_post_form_with_key_field(stack: Stack, redis: Redis) -> None:
    answer = await ubill(
        stack,
        "POST",
        "/sms/send",
        data={"key": KEY, "brandID": "1", "numbers": A, "text": "form", "stopList": "false"},
    )
    fields = await message_of(redis, accepted(answer))
    assert fields.text == "form"
    assert not fields.meta.stop_list
    assert fields.unit_numbers == ((A,),)


async def test_post_json_with_key_header_and_a_list_of_numbers(stack: Stack, redis: Redis) -> None:
    answer = await ubill(
        stack,
        "POST",
        "/sms/send",
        headers={"key": KEY},
        json={"brandID": 1, "numbers": [int(A), B], "text": "json", "stopList": True},
    )
    fields = await message_of(redis, accepted(answer))
    assert fields.unit_numbers == ((A, B),)
    assert fields.meta.stop_list


async def test_sms_ids_are_distinct_integers(stack: Stack) -> None:
    ids = [
        accepted(
            await ubill(
                stack, "GET", "/sms/send", params={"key": KEY, "brandID": "1", "numbers": A, "text": f"n{i}"}
            )
        )
        for i in range(3)
    ]
    assert len(set(ids)) == 3
    assert ids == sorted(ids)


async def test_otp_goes_to_the_otp_lane(stack: Stack, redis: Redis) -> None:
    answer = await ubill(
        stack,
        "GET",
        "/sms/send",
        params={"key": KEY, "brandID": "1", "numbers": A, "text": "code 1234", "otp": "true"},
    )
    fields = await message_of(redis, accepted(answer))
    assert fields.meta.lane == "otp"
    assert await redis.zrange(keys.lane_queue("otp"), 0, -1) == [f"{fields.meta.id}:0"]
    assert fields.meta.expires_ms - fields.meta.created_ms == 300_000


async def test_send_time_schedules(stack: Stack, redis: Redis) -> None:
    answer = await ubill(
        stack,
        "GET",
        "/sms/send",
        params={"key": KEY, "brandID": "1", "numbers": A, "text": "later", "sendTime": "2099-01-01 10:00"},
    )
    refused(answer, 99)  # more than 30 days ahead
    moment = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    answer = await ubill(
        stack,
        "GET",
        "/sms/send",
        params={
            "key": KEY,
            "brandID": "1",
            "numbers": A,
            "text": "later",
            "sendTime": format_local(moment, SEND_TIME_FORMAT),
        },
    )
    fields = await message_of(redis, accepted(answer))
    assert fields.meta.send_at_ms == int(moment.timestamp() * 1000)
    assert [r.status for r in fields.recipients()] == ["scheduled"]


REFUSALS = [
    ("brand not allowed", {"brandID": "3"}, 10),
    ("brand of another client", {"key": TOKENS["shop"], "brandID": "1"}, 10),
    ("brand not a number", {"brandID": "abc"}, 10),
    ("numbers missing", {"numbers": None}, 20),
    ("numbers empty", {"numbers": " , "}, 20),
    ("text missing", {"text": None}, 30),
    ("text blank", {"text": "   "}, 30),
    ("no valid number", {"numbers": "123,abc,+12025550143"}, 50),
]


@pytest.mark.parametrize(("change", "status_id"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
async def test_bad_input_gets_ubills_status_ids(
    stack: Stack, redis: Redis, change: dict[str, str | None], status_id: int
) -> None:
    query = {"key": KEY, "brandID": "1", "numbers": A, "text": "hello", **change}
    answer = await ubill(stack, "GET", "/sms/send", params={k: v for k, v in query.items() if v is not None})
    refused(answer, status_id)
    assert [k async for k in redis.scan_iter(match="smsgw:msg:*")] == []


async def test_json_error_is_90(stack: Stack) -> None:
    answer = await ubill(
        stack,
        "POST",
        "/sms/send",
        headers={"key": KEY, "Content-Type": "application/json"},
        data=b'{"brandID": 1, "numbers": ',
    )
    refused(answer, 90)
    answer = await ubill(stack, "POST", "/sms/send", headers={"key": KEY}, json=[A])
    refused(answer, 90)
    answer = await ubill(
        stack,
        "POST",
        "/sms/send",
        headers={"key": KEY, "Content-Type": "application/json"},
        data=b"[" * 100_000,
    )
    refused(answer, 90)
    answer = await ubill(
        stack,
        "POST",
        "/sms/send",
        headers={"key": KEY, "Content-Type": "application/json"},
        data=b'{"brandID": 1, "numbers": "995511194242", "text": "hi \\ud83d"}',
    )
    refused(answer, 90)


@pytest.mark.parametrize("where", ["query", "header", "form", "none"])
async def test_bad_key_is_401(stack: Stack, redis: Redis, where: str) -> None:
    base = {"brandID": "1", "numbers": A, "text": "hello"}
    if where == "query":
        answer = await ubill(stack, "GET", "/sms/send", params={**base, "key": "not-a-token"})
    elif where == "header":
        answer = await ubill(stack, "GET", "/sms/send", params=base, headers={"key": "not-a-token"})
    elif where == "form":
        answer = await ubill(stack, "POST", "/sms/send", data={**base, "key": "not-a-token"})
    else:
        answer = await ubill(stack, "GET", "/sms/send", params=base)
    refused(answer, 99, 401)
    assert [k async for k in redis.scan_iter(match="smsgw:msg:*")] == []


async def test_otp_needs_permission(stack: Stack) -> None:
    answer = await ubill(
        stack,
        "GET",
        "/sms/send",
        params={"key": TOKENS["shop"], "brandID": "2", "numbers": A, "text": "code", "otp": "true"},
    )
    refused(answer, 99)


async def test_facade_is_rate_limited_per_client(stack: Stack) -> None:
    query = {"key": TOKENS["limited"], "brandID": "1", "numbers": A, "text": "hi"}
    answers = [await ubill(stack, "GET", "/sms/send", params=query) for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 429]
    assert answers[2].json()["statusID"] != 0
    assert int(answers[2].headers["Retry-After"]) >= 1


# --- report and balance ---------------------------------------------------------------------------


async def report_when_final(stack: Stack, sms_id: int) -> dict[str, Any]:
    report: dict[str, Any] = {}

    async def final() -> bool:
        report.update((await ubill(stack, "GET", f"/sms/report/{sms_id}", params={"key": KEY})).json())
        return all(r["statusID"] in ("1", "2", "4") for r in report["result"])

    await eventually(final, timeout=10)
    return report


async def test_report_after_delivery_has_ubill_codes(live: Stack) -> None:
    sms_id = accepted(
        await ubill(
            live, "GET", "/sms/send", params={"key": KEY, "brandID": "1", "numbers": f"{A},{B}", "text": "x"}
        )
    )
    assert await report_when_final(live, sms_id) == {
        "statusID": 0,
        "result": [{"number": A, "statusID": "1"}, {"number": B, "statusID": "1"}],
    }
    await live.sandbox_patch({"outcomes": {"failed": 1}})
    failed = accepted(
        await ubill(live, "GET", "/sms/send", params={"key": KEY, "brandID": "1", "numbers": B, "text": "x"})
    )
    assert await report_when_final(live, failed) == {
        "statusID": 0,
        "result": [{"number": B, "statusID": "2"}],
    }


async def test_report_before_sending_is_pending(stack: Stack) -> None:
    sms_id = accepted(
        await ubill(stack, "GET", "/sms/send", params={"key": KEY, "brandID": "1", "numbers": A, "text": "x"})
    )
    answer = await ubill(stack, "GET", f"/sms/report/{sms_id}", headers={"key": KEY})
    assert answer.status == 200
    assert answer.json() == {"statusID": 0, "result": [{"number": A, "statusID": "3"}]}


async def test_report_of_unknown_or_foreign_sms_id(stack: Stack) -> None:
    sms_id = accepted(
        await ubill(stack, "GET", "/sms/send", params={"key": KEY, "brandID": "1", "numbers": A, "text": "x"})
    )
    cases = ((f"/sms/report/{sms_id}", TOKENS["shop"]), ("/sms/report/99999", KEY), ("/sms/report/abc", KEY))
    for path, key in cases:
        answer = await ubill(stack, "GET", path, params={"key": key})
        refused(answer, 99)
        assert "result" not in answer.json()
    refused(await ubill(stack, "GET", f"/sms/report/{sms_id}", params={"key": "nope"}), 99, 401)


async def test_balance_from_the_last_reading(stack: Stack, redis: Redis) -> None:
    refused(await ubill(stack, "GET", "/sms/balance", params={"key": KEY}), 99)  # nothing read yet
    await redis.set(keys.BALANCE, json.dumps({"sms": 12345, "at": 1_764_000_000_000}))
    answer = await ubill(stack, "GET", "/sms/balance", params={"key": KEY})
    assert answer.status == 200
    assert answer.json() == {"statusID": 0, "sms": "12345"}
    refused(await ubill(stack, "GET", "/sms/balance", params={"key": "nope"}), 99, 401)


async def test_balance_read_by_the_worker(redis_url: str, redis: Redis) -> None:
    async with Stack(redis_url, env={"SMSGW_BALANCE_INTERVAL": "0.1"}) as stack:

        async def read() -> bool:
            return bool(await redis.exists(keys.BALANCE))

        await eventually(read, timeout=5)
        answer = await ubill(stack, "GET", "/sms/balance", headers={"key": KEY})
        assert answer.json() == {"statusID": 0, "sms": "1000000"}


async def test_facade_send_is_delivered_like_any_message(live: Stack, redis: Redis) -> None:
    sms_id = accepted(
        await ubill(
            live,
            "POST",
            "/sms/send",
            data={"key": KEY, "brandID": "1", "numbers": f"{A},{B}", "text": "via facade", "otp": "true"},
        )
    )
    fields = await message_of(redis, sms_id)
    done = await live.wait_status(fields.meta.id, "delivered")
    assert done["priority"] == "otp"
    sends = await live.sandbox_sends()
    assert len(sends) == 1
    assert sends[0]["otp"] is True
    assert sorted(sends[0]["numbers"]) == [A, B]
    assert sends[0]["text"] == "via facade"
