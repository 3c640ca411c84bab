"""Reading ``GET /v1/events`` in tests: SSE frames from an open response, and the announced position."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from redis.asyncio import Redis

from tests.harness import TOKENS, Stack


class Events:
    """Reads SSE frames from an open response; ``position`` is the id the stream announced on connect."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []
        self.positions: list[str] = []  # ids of frames without data (position announcements)

    @property
    def position(self) -> str:
        assert self.positions, "the stream announced no position"
        return self.positions[0]

    async def next(self, within: float = 3.0) -> dict[str, Any]:
        """The next event frame as {"id", "event", "data"}; comments and positions are collected."""
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
                    if "data" in frame:
                        frame["data"] = json.loads(frame["data"])
                        return frame
                    if "id" in frame:
                        self.positions.append(frame["id"])
                    frame = {}
                else:
                    name, _, value = line.partition(": ")
                    frame[name] = value

    async def announced(self, within: float = 3.0) -> str:
        """Read up to the position announcement (the stream is live from then on)."""
        async with asyncio.timeout(within):
            while not self.positions:
                line = (await self.response.content.readline()).decode().rstrip("\n")
                if line.startswith("id: "):
                    self.positions.append(line.removeprefix("id: "))
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                else:
                    assert line == "", f"an event before the position: {line!r}"
            assert (await self.response.content.readline()) == b"\n"  # the frame ends without data
        return self.position

    async def take(self, count: int, within: float = 3.0) -> list[dict[str, Any]]:
        return [await self.next(within) for _ in range(count)]

    async def nothing_more(self, wait: float = 0.3) -> None:
        try:
            extra = await self.next(within=wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected event {extra}")


async def open_events(
    http: aiohttp.ClientSession,
    url: str,
    who: str = "auth",
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> Events:
    """An open stream, read up to its position announcement (the caller closes ``.response``)."""
    response = await http.get(
        f"{url}/v1/events",
        headers={"Authorization": f"Bearer {TOKENS[who]}", **(headers or {})},
        params=params,
    )
    assert response.status == 200, await response.text()
    assert response.content_type == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    for secret_free in response.headers.values():
        assert "tok-" not in secret_free
    reader = Events(response)
    # The stream is live once the gateway has written its first comment and its position.
    assert (await asyncio.wait_for(response.content.readline(), 3)).startswith(b":")
    await reader.announced()
    return reader


@asynccontextmanager
async def events(
    stack: Stack,
    who: str = "auth",
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> AsyncIterator[Events]:
    reader = await open_events(stack.http, stack.url, who, headers, params)
    try:
        yield reader
    finally:
        reader.response.close()


async def metric(stack: Stack, name: str, **labels: str) -> float:
    """One sample of the gateway's ``/metrics`` (0 when the series does not exist yet)."""
    async with stack.http.get(f"{stack.url}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        found, _, rest = series.partition("{")
        if found == name and dict(re.findall(r'(\w+)="([^"]*)"', rest)) == labels:
            return float(value)
    return 0.0


async def redis_connections(redis: Redis) -> tuple[int, int]:
    """(connected clients, clients blocked in a command such as XREAD BLOCK) as Redis itself sees them."""
    listing = await redis.client_list()
    return len(listing), sum("b" in str(c.get("flags", "")) for c in listing)
