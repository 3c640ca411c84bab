"""The ways a send call can go wrong on purpose: stall, 5xx, 429, accepted-but-500, and a cut connection.

One random draw per send call picks at most one fault, so each rate is the exact share of calls that meet
it. Stall, 5xx and 429 happen before anything is checked or recorded; accept_error and drop only hit calls
that were accepted, recorded and charged, which is the ambiguous case a client must not blindly resend.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Final, Literal

from aiohttp import web

from smsgw.sandbox.config import SandboxConfig

__all__ = ["Fault", "accept_error", "draw_fault", "drop", "rate_limited", "server_error", "stall"]

Fault = Literal["stall", "error", "accept_error", "drop", "rate_limited"]

# A stalled call is let go after this long even if the client still waits, so stalls cannot pile up.
STALL_LIMIT: Final = 600.0
_STALL_POLL: Final = 0.1
RETRY_AFTER: Final = 1  # seconds a rate-limited call is told to wait
_GATEWAY_PAGES: Final = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
}


def draw_fault(config: SandboxConfig, rng: random.Random) -> Fault | None:
    rates: tuple[tuple[Fault, float], ...] = (
        ("stall", config.stall_rate),
        ("error", config.error_rate),
        ("accept_error", config.accept_error_rate),
        ("drop", config.drop_rate),
        ("rate_limited", config.rate_limited_rate),
    )
    if not any(rate for _, rate in rates):
        return None
    draw = rng.random()
    for fault, rate in rates:
        if draw < rate:
            return fault
        draw -= rate
    return None


async def stall(request: web.Request, stopping: asyncio.Event) -> web.StreamResponse:
    """Hold the call open without answering until the client leaves, the server stops, or the limit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STALL_LIMIT
    while request.transport is not None and not stopping.is_set() and loop.time() < deadline:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_STALL_POLL):
                await stopping.wait()
    return _cut(request)


def server_error(rng: random.Random) -> web.Response:
    """A proxy's HTML error page: 5xx and not JSON, as a load balancer in front of uBill would answer."""
    status = rng.choice(tuple(_GATEWAY_PAGES))
    page = f"<html><head><title>{status} {_GATEWAY_PAGES[status]}</title></head><body></body></html>"
    return web.Response(status=status, text=page, content_type="text/html")


def rate_limited() -> web.Response:
    """429 with ``Retry-After``: uBill throttling the account; nothing was recorded or charged."""
    body = {"statusID": 99, "message": "Too many requests"}
    return web.json_response(body, status=429, headers={"Retry-After": str(RETRY_AFTER)})


def accept_error() -> web.Response:
    return web.Response(status=500, text="Internal Server Error", content_type="text/plain")


async def drop(request: web.Request, body: bytes) -> web.StreamResponse:
    """Send the headers (with the full Content-Length) and half the body, then close the connection."""
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.content_length = len(body)
    with contextlib.suppress(ConnectionError):  # the client left first: nothing left to cut
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
    return _cut(request, response)


def _cut(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Close the connection; aiohttp then fails quietly to finish the response it is handed."""
    if request.transport is not None:
        request.transport.close()
    return response if response is not None else web.Response(status=500)
