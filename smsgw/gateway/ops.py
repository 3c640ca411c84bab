"""Health, readiness (Redis reachable, durability), metrics and the OpenAPI document."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from smsgw.errors import ServiceUnavailable, StoreUnavailable
from smsgw.gateway.context import GATEWAY
from smsgw.gateway.jsonio import json_response
from smsgw.metrics import CONTENT_TYPE, render

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    try:
        await gw.store.ping()
        gw.durability = await gw.store.durability()  # re-read: a failover may bring other settings
    except StoreUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from None
    gw.metrics.redis_durable.set(1 if gw.durability.durable else 0)
    body = {"status": "ready", "redis": "ok", "durability": gw.durability.as_dict()}
    if not gw.durability.durable:
        body["warning"] = (
            "Redis does not run AOF with appendfsync always: a Redis crash can lose accepted work"
        )
    return json_response(body)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = await render(request.app[GATEWAY].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@routes.get("/v1/openapi.json")
async def openapi(_request: web.Request) -> web.Response:
    document = (resources.files("smsgw") / "openapi.json").read_bytes()
    return web.Response(body=document, content_type="application/json")
