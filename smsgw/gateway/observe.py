"""Request ids, one structured log line per request, and the HTTP metrics."""

from __future__ import annotations

import itertools
import re
import secrets

import structlog
from aiohttp import web

from smsgw.gateway.context import CLIENT, GATEWAY, MESSAGE_ID, REDIS_ERROR, REQUEST_ID
from smsgw.gateway.proxies import client_address

__all__ = ["begin", "record"]

log = structlog.get_logger("smsgw.gateway.http")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


_TAG = secrets.token_urlsafe(6)
_COUNTER = itertools.count(1)


def _new_request_id() -> str:
    """Process tag + counter: unique, no system call, and letters in it keep log masking (which takes long
    digit runs for phone numbers) away from it."""
    return f"{_TAG}-{next(_COUNTER):x}"


def _route(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def begin(request: web.Request) -> str:
    """Take the caller's X-Request-ID (when sane) or make one; bind it to every log line of the request."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _SAFE_ID.match(incoming) else _new_request_id()
    request[REQUEST_ID] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id


def record(request: web.Request, status: int, elapsed: float) -> None:
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
        remote=client_address(request, request.app[GATEWAY].settings.trusted_proxies),
        duration_ms=round(elapsed * 1000, 2),
        message_id=request.get(MESSAGE_ID),
    )
