"""``create_app(settings)``: the gateway's routes, middlewares and resources, ready for ``web.run_app``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web

from smsgw.errors import StoreUnavailable
from smsgw.gateway import admin, callbacks, events, facade, messages, observe, ops, problems, verifications
from smsgw.gateway.auth import Authenticator, bearer_token
from smsgw.gateway.brands import BrandGate
from smsgw.gateway.context import CLIENT, GATEWAY, Gateway
from smsgw.gateway.ratelimit import enforce_client_rate
from smsgw.metrics import GatewayMetrics
from smsgw.settings import MAX_BODY_BYTES, Settings
from smsgw.store import Store

__all__ = ["create_app"]

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Paths under /v1 that authenticate themselves (the facade takes uBill-style keys) or are public.
_SELF_AUTH = ("/v1/sms/", "/v1/openapi.json")


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one middleware (each layer costs on every request): request id, authentication and the
    client's rate, problem details for every failure, then metrics and the request's log line."""
    started = time.perf_counter()
    request_id = observe.begin(request)
    try:
        path = request.path
        if path.startswith("/v1/") and not path.startswith(_SELF_AUTH):
            gw = request.app[GATEWAY]
            client = gw.auth.require(bearer_token(request))
            request[CLIENT] = client
            if not (path == "/v1/messages" and request.method == "POST"):  # a send checks it in its accept
                await enforce_client_rate(gw, client)
        response = await handler(request)
    except Exception as exc:
        response = problems.answer(request, exc)
    response.headers["X-Request-ID"] = request_id
    observe.record(request, response.status, time.perf_counter() - started)
    return response


async def _resources(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    try:
        gw.durability = await gw.store.durability()
        await gw.store.load_scripts()
        await gw.store.messages.sync_clock()
        gw.metrics.redis_durable.set(1 if gw.durability.durable else 0)
        if not gw.durability.durable:
            log.warning(
                "redis.not_durable",
                **gw.durability.as_dict(),
                detail="accepted work can be lost if Redis crashes: run appendonly yes, appendfsync always",
            )
    except StoreUnavailable as exc:
        log.error("redis.unreachable_at_start", error=str(exc))
    if gw.settings.brands_interval > 0:
        with contextlib.suppress(StoreUnavailable):
            await gw.brands.refresh()
    clock = asyncio.create_task(gw.store.messages.keep_clock())
    brands = asyncio.create_task(_brands(gw))
    yield
    clock.cancel()
    brands.cancel()
    for task in list(gw.tasks):
        task.cancel()
    await asyncio.gather(clock, brands, *gw.tasks, return_exceptions=True)
    await gw.store.close()
    await gw.blocking.aclose()


async def _brands(gw: Gateway) -> None:
    """uBill's brand verdicts, kept fresh after the first read (``_resources``, before serving)."""
    if gw.settings.brands_interval > 0:
        await gw.brands.keep_fresh()


def create_app(settings: Settings) -> web.Application:
    store = Store(settings)
    metrics = GatewayMetrics()
    gateway = Gateway(
        settings=settings,
        store=store,
        blocking=events.reader_redis(settings),
        metrics=metrics,
        auth=Authenticator(settings.clients),
        brands=BrandGate(store.brands, settings, metrics),
    )
    app = web.Application(middlewares=[edge], client_max_size=MAX_BODY_BYTES)
    app[GATEWAY] = gateway
    for module in (messages, callbacks, facade, events, admin, ops):
        app.add_routes(module.routes)
    events.install(app)
    app.cleanup_ctx.append(_resources)
    verifications.setup(app)  # after _resources: its sweep stops before Redis closes
    return app
