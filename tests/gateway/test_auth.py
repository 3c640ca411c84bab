"""Bearer tokens on every ``/v1/*`` call, and secrets that never show in an answer."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from tests.gateway.conftest import call, message_keys, problem
from tests.harness import CALLBACK_KEY, TOKENS, Stack

PROTECTED = [
    ("POST", "/v1/messages"),
    ("GET", "/v1/messages/msg_x"),
    ("DELETE", "/v1/messages/msg_x"),
    ("GET", "/v1/events"),
    ("GET", "/v1/admin/dead-letters"),
    ("POST", "/v1/admin/dead-letters/msg_x:0/replay"),
    ("GET", "/v1/no-such-thing"),
]
NEAR_MISS = TOKENS["auth"] + "0"


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_every_v1_call_needs_a_bearer_token(stack: Stack, method: str, path: str) -> None:
    wrong: list[dict[str, str]] = [
        {},
        {"Authorization": f"Bearer {NEAR_MISS}"},
        {"Authorization": f"Token {TOKENS['auth']}"},
    ]
    for headers in wrong:
        answer = await call(stack, method, path, who=None, headers=headers, json={})
        body = problem(answer, 401, "unauthorized")
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="smsgw"'
        assert NEAR_MISS not in answer.text
        assert NEAR_MISS not in str(dict(answer.headers))
        assert "Bearer" in body["detail"]


async def test_token_elsewhere_than_the_header_is_not_accepted(stack: Stack, redis: Redis) -> None:
    answer = await call(
        stack,
        "POST",
        "/v1/messages",
        who=None,
        params={"key": TOKENS["auth"]},
        json={"to": ["995511194242"], "text": "hi"},
    )
    problem(answer, 401)
    answer = await call(
        stack,
        "POST",
        "/v1/messages",
        who=None,
        headers={"key": TOKENS["auth"]},
        json={"to": ["995511194242"], "text": "hi"},
    )
    problem(answer, 401)
    assert await message_keys(redis) == []


async def test_scheme_is_case_insensitive(stack: Stack) -> None:
    answer = await call(
        stack,
        "POST",
        "/v1/messages",
        who=None,
        headers={"Authorization": f"bearer {TOKENS['shop']}"},
        json={"to": ["995511194242"], "text": "hi"},
    )
    assert answer.status == 202, answer.text
    assert answer.json()["brand_id"] == 2


async def test_each_token_is_its_own_client(stack: Stack) -> None:
    brands = {}
    for who in ("auth", "shop", "ops"):
        answer = await call(
            stack, "POST", "/v1/messages", who=who, json={"to": ["995511194242"], "text": "hi"}
        )
        assert answer.status == 202
        brands[who] = answer.json()["brand_id"]
    assert brands == {"auth": 1, "shop": 2, "ops": 1}


async def test_callback_does_not_take_client_tokens(stack: Stack) -> None:
    query = {"smsID": "100000", "number": "995511194242", "statusID": "1", "date": "2030-01-01 16:00:00"}
    for who in ("auth", "ops"):
        answer = await call(stack, "GET", "/callbacks/ubill", who=who, params=query)
        assert answer.status == 403
        answer = await call(stack, "GET", "/callbacks/ubill", who=None, params={**query, "key": TOKENS[who]})
        assert answer.status == 403


async def test_secrets_never_in_answers(stack: Stack) -> None:
    """``call`` checks every answer for secrets; these are the answers most tempted to echo one."""
    wrong_key = CALLBACK_KEY[:-2] + "zz"
    answers = [
        await call(stack, "GET", "/callbacks/ubill", who=None, params={"key": wrong_key}),
        await call(stack, "GET", "/callbacks/ubill", who=None, params={"key": CALLBACK_KEY, "smsID": "!"}),
        await call(stack, "GET", "/v1/sms/send", who=None, params={"key": NEAR_MISS, "numbers": "1"}),
        await call(stack, "GET", "/v1/sms/balance", who=None, headers={"key": NEAR_MISS}),
        await call(stack, "GET", "/v1/sms/report/1", who=None, params={"key": NEAR_MISS}),
        await call(stack, "POST", "/v1/messages", who=None, headers={"Authorization": f"Bearer {NEAR_MISS}"}),
        await call(stack, "POST", "/v1/messages", data=b"{", headers={"Content-Type": "application/json"}),
    ]
    assert [a.status for a in answers] == [403, 400, 401, 401, 401, 401, 400]
    for answer in answers:
        assert wrong_key not in answer.text
        assert NEAR_MISS not in answer.text
        for value in answer.headers.values():
            assert wrong_key not in value
            assert NEAR_MISS not in value
