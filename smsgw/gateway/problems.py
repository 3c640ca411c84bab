"""One place that turns every failure into RFC 9457 problem details (never a stack trace)."""

from __future__ import annotations

import json

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

__all__ = ["PROBLEM_JSON", "answer", "problem_response"]

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger(__name__)


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


def answer(request: web.Request, exc: Exception) -> web.Response:
    """The problem details for any exception a handler raised (redirects are re-raised as they are)."""
    if isinstance(exc, ProblemError):
        return problem_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return problem_response(_from_http(exc))
    if isinstance(exc, REDIS_ERRORS):
        log.warning("redis.unavailable", error=type(exc).__name__)
        request[REDIS_ERROR] = True
        return problem_response(ServiceUnavailable("Redis is unavailable; nothing was accepted, retry later"))
    log.error("request.failed", exc_info=exc)
    return problem_response(ProblemError("an unexpected error occurred; it has been logged"))
