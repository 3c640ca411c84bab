"""One place that turns every failure into RFC 9457 problem details (never a stack trace)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from smsgw.errors import (
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    ServiceUnavailable,
    UnsupportedMedia,
)
from smsgw.gateway.context import REDIS_ERROR
from smsgw.redisdb import REDIS_ERRORS

__all__ = ["PROBLEM_JSON", "problem_response", "problems"]

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(problem: ProblemError) -> web.Response:
    return web.Response(
        status=problem.status,
        body=json.dumps(problem.body(), ensure_ascii=False).encode(),
        content_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def _from_http(exc: web.HTTPException) -> ProblemError:
    if exc.status == 404:
        return NotFound("no such resource")
    if exc.status == 405:
        return MethodNotAllowed(f"method not allowed; allowed: {exc.headers.get('Allow', '')}")
    if exc.status == 413:
        return PayloadTooLarge("the request body is larger than 1 MiB")
    if exc.status == 415:
        return UnsupportedMedia("send a JSON body with 'Content-Type: application/json'")
    problem = ProblemError(exc.reason or "error")
    problem.status, problem.title = exc.status, exc.reason or "Error"
    return problem


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as exc:
        return problem_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(_from_http(exc))
    except REDIS_ERRORS as exc:
        log.warning("redis.unavailable", error=type(exc).__name__)
        request[REDIS_ERROR] = True
        return problem_response(ServiceUnavailable("Redis is unavailable; nothing was accepted, retry later"))
    except Exception:
        log.exception("request.failed")
        return problem_response(ProblemError("an unexpected error occurred; it has been logged"))
