"""The gateway over HTTP: a ``Stack`` per test and small helpers that check every answer the same way.

``call`` refuses any answer that shows a secret (a client token, the callback key, the uBill key) in its body
or headers, so every test also checks that secrets never leak.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import structlog
from multidict import CIMultiDictProxy
from redis.asyncio import Redis

from smsgw.store import keys
from smsgw.store.dispatch import Capacity, Dispatch
from smsgw.store.scripts import Scripts
from tests.harness import CALLBACK_KEY, TOKENS, UBILL_KEY, Stack

PROBLEM_JSON = "application/problem+json"
SECRETS = (*TOKENS.values(), CALLBACK_KEY, UBILL_KEY)
PROBLEM_BASE = "https://sms-gateway.internal/problems/"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    content_type: str
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def assert_no_secrets(answer: Answer) -> None:
    for secret in SECRETS:
        assert secret not in answer.text, f"a secret is in the body: {answer.text[:300]}"
        for name, value in answer.headers.items():
            assert secret not in value, f"a secret is in header {name}"


async def call(
    stack: Stack,
    method: str,
    path: str,
    *,
    who: str | None = "auth",
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> Answer:
    """One request to the gateway; ``who`` picks the bearer token (None: no Authorization header)."""
    sent = {**(stack.auth(who) if who else {}), **(headers or {})}
    async with stack.http.request(method, stack.url + path, headers=sent, **kwargs) as response:
        text = await response.text()
        answer = Answer(response.status, response.headers, response.content_type, text)
    assert_no_secrets(answer)
    return answer


def problem(answer: Answer, status: int, slug: str | None = None) -> dict[str, Any]:
    """Check an RFC 9457 problem answer and return its body."""
    assert answer.status == status, (answer.status, answer.text[:500])
    assert answer.content_type == PROBLEM_JSON, answer.content_type
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert body["type"].startswith(PROBLEM_BASE)
    if slug is not None:
        assert body["type"] == PROBLEM_BASE + slug
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if status == 422:
        assert isinstance(body["errors"], list)
        assert body["errors"]
        for error in body["errors"]:
            assert set(error) == {"field", "message"}
            assert isinstance(error["field"], str)
            assert isinstance(error["message"], str)
            assert error["message"]
    return body


def fields_of(body: Mapping[str, Any]) -> dict[str, str]:
    """A 422 body's errors as {field: message}."""
    return {e["field"]: e["message"] for e in body["errors"]}


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def numbers(count: int, start: int = 0) -> list[str]:
    """Distinct valid Georgian mobiles (the sandbox accepts 9955 + 8 digits)."""
    return [f"99555{start + i:07d}" for i in range(count)]


async def list_length(redis: Redis, key: str) -> int:
    """LLEN, typed (redis-py types sync and async results as one union)."""
    return int(await redis.llen(key))


async def hash_field(redis: Redis, key: str, field: str) -> str | None:
    value = await redis.hget(key, field)
    return None if value is None else str(value)


async def message_keys(redis: Redis) -> list[str]:
    return sorted([k async for k in redis.scan_iter(match=keys.message("*"))])


@pytest.fixture
async def stack(redis_url: str) -> AsyncIterator[Stack]:
    """Sandbox + gateway, no worker: accepted work stays queued."""
    async with Stack(redis_url, worker=False) as running:
        yield running


@pytest.fixture
async def live(redis_url: str) -> AsyncIterator[Stack]:
    """Sandbox + gateway + worker: accepted work is sent and called back."""
    async with Stack(redis_url) as running:
        yield running


@pytest.fixture
def scripts(redis: Redis) -> Scripts:
    return Scripts.load(redis)


@pytest.fixture
def dispatch(redis: Redis, scripts: Scripts) -> Dispatch:
    """The worker's side of the store, driven by hand (owner ``test-owner``), as a worker would."""
    return Dispatch(
        redis,
        redis,
        scripts,
        owner="test-owner",
        lease=5.0,
        capacity=Capacity(0, 0, {}),
    )


@pytest.fixture
def log_events() -> Iterator[list[dict[str, Any]]]:
    """Every structlog line of the test's in-process servers, as event dicts just before rendering (so after
    redaction: what would be printed).

    Loggers are cached on first use with the configured processor list, so a recorder is put into that very
    list (and taken out after) rather than reconfiguring structlog, which cached loggers ignore."""
    events: list[dict[str, Any]] = []

    def record(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        events.append(dict(event_dict))
        return event_dict

    processors = structlog.get_config()["processors"]
    processors.insert(len(processors) - 1, record)
    try:
        yield events
    finally:
        processors.remove(record)
