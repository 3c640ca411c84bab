"""Shared event readers: Redis connections do not grow with streams, joins miss nothing, slow streams end.

Most events here are written straight into the client's stream (the entry format the Lua scripts write), so
thousands of them cost milliseconds; the gateway serves whatever its streams hold.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import aiohttp
import pytest
from redis.asyncio import Redis

from smsgw.gateway import events as events_module
from smsgw.gateway.event_hub import CATCH_UP_READS, FAREWELL, TOO_SLOW
from smsgw.store import keys
from tests.gateway.sse import Events, metric, open_events, redis_connections
from tests.harness import TOKENS, Stack

AUTH_STREAM = keys.client_stream("auth-service")


def event_json(i: int, client: str = "auth-service") -> str:
    return json.dumps(
        {
            "message_id": f"msg_{i:024x}",
            "client": client,
            "reference": f"ref-{i}-" + "x" * 40,
            "number": "995511194242",
            "status": "delivered",
            "provider_sms_id": str(100_000 + i),
            "provider_status_id": 1,
            "occurred_at": "2026-11-25T23:53:18.412Z",
        }
    )


async def write_events(redis: Redis, count: int, start: int = 0, key: str = AUTH_STREAM) -> list[str]:
    ids: list[str] = []
    for first in range(start, start + count, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(first, min(first + 1000, start + count)):
                pipe.xadd(key, {"event": event_json(i)})
            ids += await pipe.execute()
    return ids


async def ids_after(redis: Redis, position: str) -> list[str]:
    entries = await redis.xrange(AUTH_STREAM, min=f"({position}" if position not in ("0", "0-0") else "-")
    return [entry_id for entry_id, _ in entries]


async def read_until(stream: Events, final: str, within: float = 20.0) -> list[str]:
    got: list[str] = []
    async with asyncio.timeout(within):
        while not got or got[-1] != final:
            got.append((await stream.next(within))["id"])
    return got


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


async def blocked_readers(redis: Redis) -> int:
    return (await redis_connections(redis))[1]


async def readers_become(redis: Redis, count: int, within: float = 12.0) -> None:
    """Wait until exactly ``count`` connections sit in a blocking read (readers start and stop async)."""
    deadline = time.monotonic() + within
    while (now := await blocked_readers(redis)) != count:
        assert time.monotonic() < deadline, f"{now} blocked readers, expected {count}"
        await asyncio.sleep(0.05)


async def test_two_hundred_streams_hold_one_redis_reader_per_client(
    redis_url: str, redis: Redis, http: aiohttp.ClientSession
) -> None:
    caps = {"SMSGW_EVENTS_MAX_STREAMS": "200", "SMSGW_EVENTS_MAX_STREAMS_PER_CLIENT": "100"}
    async with Stack(redis_url, env=caps, worker=False) as stack, AsyncExitStack() as open_streams:
        first = [await open_events(http, stack.url, who) for who in ("auth", "shop")]
        for stream in first:
            open_streams.callback(stream.response.close)
        await readers_become(redis, 2)  # one blocking XREAD per client stream key
        with_two, _ = await redis_connections(redis)

        more = await asyncio.gather(
            *(open_events(http, stack.url, "auth" if i % 2 else "shop") for i in range(198))
        )
        streams = first + list(more)
        for stream in more:
            open_streams.callback(stream.response.close)
        with_two_hundred, readers = await redis_connections(redis)
        assert readers == 2
        # Joining streams read through a gate on the normal pool: a few connections at most, never one each.
        assert with_two_hundred <= with_two + CATCH_UP_READS, (with_two, with_two_hundred)
        assert await metric(stack, "smsgw_event_stream_clients") == 200

        refused = await http.get(f"{stack.url}/v1/events", headers=stack.auth("ops"))
        assert refused.status == 429  # the process is full
        refused.close()

        # Every stream gets its own client's events, and only those.
        await redis.xadd(AUTH_STREAM, {"event": event_json(1)})
        await redis.xadd(keys.client_stream("shop"), {"event": event_json(2, "shop")})
        got = await asyncio.gather(*(stream.next(within=10) for stream in streams))
        assert {(i % 2, frame["data"]["client"]) for i, frame in enumerate(got[2:])} == {
            (1, "auth-service"),
            (0, "shop"),
        }
        assert [frame["data"]["client"] for frame in got[:2]] == ["auth-service", "shop"]
        assert (await redis_connections(redis))[0] <= with_two + CATCH_UP_READS

    # Every stream closed: each reader leaves within its block time, and its connection is idle again.
    await readers_become(redis, 0)


async def test_a_reader_stops_when_its_last_stream_leaves(
    redis_url: str, redis: Redis, http: aiohttp.ClientSession
) -> None:
    async with Stack(redis_url, worker=False) as stack:
        streams = [await open_events(http, stack.url) for _ in range(3)]
        await readers_become(redis, 1)
        streams[0].response.close()
        streams[1].response.close()
        await asyncio.sleep(6.5)  # longer than a reader's block time: it stays while one stream is left
        assert await blocked_readers(redis) == 1
        streams[2].response.close()
        await readers_become(redis, 0)  # within its block time (5 s) after the gateway saw the close
        # And a stream opened afterwards starts a new one.
        again = await open_events(http, stack.url)
        await readers_become(redis, 1)
        await redis.xadd(AUTH_STREAM, {"event": event_json(7)})
        assert (await again.next())["data"]["message_id"] == f"msg_{7:024x}"
        again.response.close()


async def test_streams_joining_while_events_flow_miss_nothing_and_repeat_nothing(
    redis_url: str, redis: Redis, http: aiohttp.ClientSession
) -> None:
    """Subscribe, catch up, then drain skipping what was sent: checked at random join moments."""
    chance = random.Random(20261129)
    written: list[str] = []
    async with Stack(redis_url, worker=False) as stack:
        done = asyncio.Event()

        async def writer() -> None:
            for batch in range(60):
                written.extend(await write_events(redis, 25, start=batch * 25))
                await asyncio.sleep(0.01)
            done.set()

        async def joiner(delay: float, mode: str) -> tuple[str, list[str]]:
            await asyncio.sleep(delay)
            headers = {}
            if mode == "resume" and written:
                headers["Last-Event-ID"] = chance.choice(written)
            elif mode == "zero":
                headers["Last-Event-ID"] = "0"
            stream = await open_events(http, stack.url, headers=headers)
            got: list[str] = []
            try:
                async with asyncio.timeout(30):
                    while not (done.is_set() and (got[-1] if got else stream.position) == written[-1]):
                        try:
                            got.append((await stream.next(within=0.5))["id"])
                        except TimeoutError:
                            continue
                return stream.position, got
            finally:
                stream.response.close()

        modes = ("fresh", "resume", "zero")
        joiners = [joiner(chance.uniform(0, 0.8), modes[i % 3]) for i in range(30)]
        results = await asyncio.gather(writer(), *joiners)
    assert len(written) == 1500
    for position, got in results[1:]:
        assert isinstance(position, str) and isinstance(got, list)
        assert got == await ids_after(redis, position), f"from {position}: gap or duplicate"


async def test_a_stream_that_falls_behind_is_ended_and_resumes_without_a_gap(
    redis_url: str, redis: Redis, http: aiohttp.ClientSession
) -> None:
    async with Stack(redis_url, env={"SMSGW_EVENTS_STREAM_BUFFER": "10"}, worker=False) as stack:
        reader, writer, head = await stalled_stream(stack.url)
        position = head.split(b"\nid: ", 1)[1].split(b"\n", 1)[0].decode()
        ids = await write_events(redis, 30_000)  # ~10 MB: more than every socket buffer on the way holds
        deadline = time.monotonic() + 20
        while await metric(stack, "smsgw_event_streams_too_slow_total", client="auth-service") < 1:
            assert time.monotonic() < deadline, "the stalled stream was never ended"
            await asyncio.sleep(0.2)
        rest = await asyncio.wait_for(reader.read(), 20)  # what was on its way, then the end
        writer.close()
        body = head + rest
        assert body.endswith(FAREWELL[TOO_SLOW])
        received = [
            line.removeprefix(b"id: ").decode()
            for frame in body.split(b"\n\n")
            if b"\ndata: " in frame
            for line in frame.split(b"\n")
            if line.startswith(b"id: ")
        ]
        assert 0 < len(received) < len(ids)
        assert received == ids[: len(received)]
        resumed = await open_events(http, stack.url, headers={"Last-Event-ID": received[-1]})
        remainder = await read_until(resumed, ids[-1], within=60)
        resumed.response.close()
        assert received + remainder == ids  # nothing lost, nothing twice
        assert position == "0-0"


async def test_a_stream_whose_client_stops_reading_is_cut_off(
    redis_url: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "WRITE_TIMEOUT", 1.0)
    async with Stack(redis_url, env={"SMSGW_EVENTS_STREAM_BUFFER": "10"}, worker=False) as stack:
        reader, writer, _ = await stalled_stream(stack.url)
        assert await metric(stack, "smsgw_event_stream_clients") == 1
        await write_events(redis, 30_000)
        deadline = time.monotonic() + 20
        while await metric(stack, "smsgw_event_stream_clients") > 0:
            assert time.monotonic() < deadline, "a client that reads nothing kept its stream"
            await asyncio.sleep(0.2)
        async with asyncio.timeout(20):  # the connection is closed, whatever was still on its way
            try:
                while await reader.read(65536):
                    pass
            except ConnectionError:
                pass
        writer.close()


async def stalled_stream(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A raw HTTP/1.0 event stream that reads its head and position, then stops reading."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(
        f"GET /v1/events HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {TOKENS['auth']}\r\n\r\n".encode()
    )
    head = b""
    async with asyncio.timeout(5):
        while b"\nid: " not in head or not head.endswith(b"\n\n"):
            head += await reader.read(1)
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head[:100]
    return reader, writer, head
