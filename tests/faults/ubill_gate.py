"""An HTTP hop in front of the sandbox (as a load balancer in front of uBill is): forwards every call, or
holds send calls for a while and answers a 5xx without forwarding them.

The sandbox answers its 5xx at once, before any latency; a 5xx that comes seconds after the call left (so the
call is in flight meanwhile, and uBill provably never got it) needs this hop.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from tests.harness import serve

__all__ = ["UbillGate"]

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


class UbillGate:
    def __init__(self, sandbox_url: str) -> None:
        self.sandbox_url = sandbox_url
        self.fail_sends_after: float | None = None  # seconds a send is held before its 503; None: forward
        self.failed = 0  # send calls answered 503 by the hop (never reached the sandbox)
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> UbillGate:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.url = await serve(app)
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/sms/send") and self.fail_sends_after is not None:
            await asyncio.sleep(self.fail_sends_after)
            self.failed += 1
            return web.Response(status=503, text="<html><body>503 Service Unavailable</body></html>")
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with self._http.request(
            request.method, self.sandbox_url + request.path_qs, headers=headers, data=await request.read()
        ) as upstream:
            body = await upstream.read()
            return web.Response(
                status=upstream.status,
                body=body,
                headers={"Content-Type": upstream.headers.get("Content-Type", "application/json")},
            )
