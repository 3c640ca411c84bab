"""Request ids, one structured log line per request, and the HTTP metrics (outermost middleware)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from smsgw.gateway.context import CLIENT, GATEWAY, MESSAGE_ID, REDIS_ERROR, REQUEST_ID

__all__ = ["observe"]

log = structlog.get_logger("smsgw.gateway.http")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    # urlsafe letters and digits: never a long digit run that log masking would take for a phone number
    request_id = incoming if _SAFE_ID.match(incoming) else secrets.token_urlsafe(9)
    request[REQUEST_ID] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        _record(request, status, time.perf_counter() - started)


def _record(request: web.Request, status: int, elapsed: float) -> None:
    metrics = request.app[GATEWAY].metrics
    route = _route(request)
    client = request[CLIENT].name if CLIENT in request else "-"
    metrics.requests.labels(route, request.method, str(status), client).inc()
    metrics.request_duration.labels(route, request.method).observe(elapsed)
    if request.get(REDIS_ERROR):
        metrics.redis_errors.inc()
    level = log.debug if status < 400 and route != "unmatched" else log.info
    level(
        "request",
        method=request.method,
        route=route,
        status=status,
        client=client,
        duration_ms=round(elapsed * 1000, 2),
        message_id=request.get(MESSAGE_ID),
    )
