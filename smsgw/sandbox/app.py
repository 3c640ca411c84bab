"""``create_app``: the sandbox's aiohttp application, its routes and the resources it owns.

Resources are opened and closed by ``cleanup_ctx`` (the callback session, then the delivery tasks, unwound
in reverse); ``on_shutdown`` runs before aiohttp waits for open requests, so it releases stalled calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

import aiohttp
from aiohttp import web

from smsgw.sandbox import api, control
from smsgw.sandbox.config import SandboxConfig
from smsgw.sandbox.runtime import SANDBOX, Sandbox
from smsgw.sandbox.state import Clock, utc_now

__all__ = ["SANDBOX", "SESSION", "create_app"]

# A POST may carry ~100k numbers in one JSON body.
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
CALLBACK_CONNECTIONS: Final = 100

SESSION: Final = web.AppKey("sandbox_session", aiohttp.ClientSession)


def create_app(config: SandboxConfig, *, clock: Clock = utc_now) -> web.Application:
    """The simulator; ``clock`` is injectable so a test can put a sendTime seconds away, not minutes."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SANDBOX] = Sandbox(config, clock)
    app.router.add_routes(api.routes)
    app.router.add_routes(control.routes)
    app.cleanup_ctx.append(_session)
    app.cleanup_ctx.append(_deliveries)
    app.on_shutdown.append(_release_stalls)
    return app


async def _session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=CALLBACK_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        app[SESSION] = session
        yield


async def _deliveries(app: web.Application) -> AsyncIterator[None]:
    deliverer = app[SANDBOX].deliverer
    deliverer.start(app[SESSION])
    yield
    await deliverer.stop()


async def _release_stalls(app: web.Application) -> None:
    app[SANDBOX].stopping.set()
