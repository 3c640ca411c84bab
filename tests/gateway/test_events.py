"""``GET /v1/events``: a client's own status events as server-sent events, resumable with ``Last-Event-ID``.

Events are produced by cancelling messages (no worker needed): each cancelled recipient is one status event.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from smsgw.store import keys
from tests.gateway.conftest import assert_no_secrets, call, problem
from tests.gateway.sse import events, metric
from tests.harness import TOKENS, Stack

A, B, C = "995511194242", "995511194243", "995511194244"


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


async def test_position_is_announced_on_connect(stack: Stack, redis: Redis) -> None:
    """An ``id:`` line without data tells a client where its stream started, before any event."""
    async with events(stack) as empty:
        assert empty.position == "0-0"  # nothing written yet: resuming from here replays everything
    await cancelled(stack, [A, B])
    newest = (await redis.xrevrange(keys.client_stream("auth-service"), count=1))[0][0]
    async with events(stack) as fresh:
        assert fresh.position == newest
    async with events(stack, headers={"Last-Event-ID": "1-0"}) as resumed:
        assert resumed.position == "1-0"
        assert len(await resumed.take(2)) == 2
    async with events(stack, params={"last_event_id": "0"}) as everything:
        assert everything.position == "0"
    async with events(stack, headers={"Last-Event-ID": f"{2**64 - 1}-{2**64 - 1}"}) as last_possible:
        await last_possible.nothing_more()


async def test_resuming_from_the_announced_position_misses_nothing(stack: Stack) -> None:
    """A client that lost its stream before any event resumes from the position and gets the gap."""
    async with events(stack) as first:
        position = first.position
    during_the_gap = await cancelled(stack, [A, B, C])
    async with events(stack, headers={"Last-Event-ID": position}) as second:
        missed = await second.take(3)
        await second.nothing_more()
    assert {(f["data"]["message_id"], f["data"]["number"]) for f in missed} == {
        (during_the_gap, n) for n in (A, B, C)
    }


async def test_streams_are_capped_per_client_and_per_process(redis_url: str) -> None:
    caps = {"SMSGW_EVENTS_MAX_STREAMS_PER_CLIENT": "2", "SMSGW_EVENTS_MAX_STREAMS": "3"}
    async with Stack(redis_url, env=caps, worker=False) as stack:
        async with events(stack) as one, events(stack):
            over_client = await call(stack, "GET", "/v1/events")
            problem(over_client, 429, "rate-limited")
            assert int(over_client.headers["Retry-After"]) >= 1
            assert "client limit: 2" in over_client.json()["detail"]
            async with events(stack, "shop"):
                over_process = await call(stack, "GET", "/v1/events", who="shop")
                problem(over_process, 429, "rate-limited")
                assert "process limit: 3" in over_process.json()["detail"]
                assert await metric(stack, "smsgw_event_stream_clients") == 3
            one.response.close()
            # The slot is free again once the gateway has noticed the closed stream.
            await eventually_admitted(stack)
        labels = {"client": "auth-service"}
        assert await metric(stack, "smsgw_event_streams_refused_total", **labels, limit="client") == 1
        assert await metric(stack, "smsgw_event_streams_refused_total", client="shop", limit="process") == 1


async def eventually_admitted(stack: Stack, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while True:
        async with stack.http.get(f"{stack.url}/v1/events", headers=stack.auth()) as response:
            if response.status == 200:
                return
            assert response.status == 429
        assert time.monotonic() < deadline, "the closed stream's slot was never freed"
        await asyncio.sleep(0.2)
