"""``GET /v1/events``: a client's own status events as server-sent events, resumable with ``Last-Event-ID``.

Events are produced by cancelling messages (no worker needed): each cancelled recipient is one status event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from redis.asyncio import Redis

from smsgw.store import keys
from tests.gateway.conftest import assert_no_secrets, call, problem
from tests.harness import TOKENS, Stack

A, B, C = "995511194242", "995511194243", "995511194244"


class Events:
    """Reads SSE frames from an open response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next(self, within: float = 3.0) -> dict[str, Any]:
        """The next event frame as {"id", "event", "data"}; comments are collected, not returned."""
        frame: dict[str, Any] = {}
        async with asyncio.timeout(within):
            while True:
                line = (await self.response.content.readline()).decode()
                if line == "":
                    raise AssertionError("stream ended")
                line = line.rstrip("\n")
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line == "":
                    if frame:
                        frame["data"] = json.loads(frame["data"])
                        return frame
                else:
                    name, _, value = line.partition(": ")
                    frame[name] = value

    async def take(self, count: int) -> list[dict[str, Any]]:
        return [await self.next() for _ in range(count)]

    async def nothing_more(self, wait: float = 0.3) -> None:
        try:
            extra = await self.next(within=wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected event {extra}")


@asynccontextmanager
async def events(
    stack: Stack,
    who: str = "auth",
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> AsyncIterator[Events]:
    async with stack.http.get(
        f"{stack.url}/v1/events", headers={**stack.auth(who), **(headers or {})}, params=params
    ) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        for secret_free in response.headers.values():
            assert "tok-" not in secret_free
        reader = Events(response)
        # The stream is live once the gateway has written its first comment.
        line = await asyncio.wait_for(response.content.readline(), 3)
        assert line.startswith(b":")
        yield reader


async def cancelled(stack: Stack, to: list[str], who: str = "auth", reference: str | None = None) -> str:
    body: dict[str, Any] = {"to": to, "text": "x"}
    if reference:
        body["reference"] = reference
    created = await stack.send(body, who=who)
    answer = await call(stack, "DELETE", f"/v1/messages/{created['id']}", who=who)
    assert answer.status == 200
    return str(created["id"])


async def test_own_events_only_with_stream_ids(stack: Stack, redis: Redis) -> None:
    async with events(stack) as stream:
        theirs = await cancelled(stack, [C], who="shop")
        mine = await cancelled(stack, [A, B], reference="r-1")
        got = await stream.take(2)
        await stream.nothing_more()
    ids = [entry_id for entry_id, _ in await redis.xrange(keys.client_stream("auth-service"))]
    assert [frame["id"] for frame in got] == ids
    assert all(frame["event"] == "status" for frame in got)
    assert {frame["data"]["number"] for frame in got} == {A, B}
    for frame in got:
        assert frame["data"]["message_id"] == mine
        assert frame["data"]["message_id"] != theirs
        assert frame["data"]["client"] == "auth-service"
        assert frame["data"]["reference"] == "r-1"
        assert frame["data"]["status"] == "cancelled"
    assert await redis.xlen(keys.client_stream("shop")) == 1


async def test_resume_after_last_event_id(stack: Stack) -> None:
    await cancelled(stack, [A, B, C])
    async with events(stack, params={"last_event_id": "0"}) as stream:
        first_three = await stream.take(3)
    async with events(stack, headers={"Last-Event-ID": first_three[0]["id"]}) as stream:
        rest = await stream.take(2)
        await stream.nothing_more()
        later = await cancelled(stack, [A])
        live = await stream.next()
    assert rest == first_three[1:]
    assert live["data"]["message_id"] == later
    assert live["id"] > first_three[-1]["id"]
    async with events(stack, headers={"Last-Event-ID": live["id"]}) as stream:
        await stream.nothing_more()


async def test_replay_from_zero(stack: Stack) -> None:
    first = await cancelled(stack, [A])
    second = await cancelled(stack, [B])
    async with events(stack, params={"last_event_id": "0"}) as stream:
        replayed = await stream.take(2)
        await stream.nothing_more()
    assert [f["data"]["message_id"] for f in replayed] == [first, second]


async def test_without_last_event_id_only_new_events(stack: Stack) -> None:
    await cancelled(stack, [A])
    async with events(stack) as stream:
        await stream.nothing_more()
        newer = await cancelled(stack, [B])
        assert (await stream.next())["data"]["message_id"] == newer


async def test_bad_last_event_id_is_400(stack: Stack) -> None:
    answer = await call(stack, "GET", "/v1/events", headers={"Last-Event-ID": "yesterday"})
    problem(answer, 400, "bad-request")
    problem(await call(stack, "GET", "/v1/events", params={"last_event_id": "1-2-3"}), 400, "bad-request")


async def test_events_need_a_token(stack: Stack) -> None:
    answer = await call(stack, "GET", "/v1/events", who=None)
    problem(answer, 401)
    assert_no_secrets(answer)


async def test_shutdown_ends_open_streams_promptly(redis_url: str) -> None:
    """A stream never ends by itself; the gateway's shutdown must not wait on it (nor for its timeout)."""
    stack = Stack(redis_url, worker=False)
    await stack.__aenter__()
    response = await stack.http.get(
        f"{stack.url}/v1/events", headers={"Authorization": f"Bearer {TOKENS['auth']}"}
    )
    assert response.status == 200
    assert (await response.content.readline()).startswith(b": connected")
    started = time.monotonic()
    await stack.__aexit__(None, None, None)
    assert time.monotonic() - started < 3.0
    response.close()
