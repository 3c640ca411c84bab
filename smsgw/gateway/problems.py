"""One place that turns every failure into RFC 9457 problem details (never a stack trace)."""

from __future__ import annotations

import json

import structlog
from aiohttp import web

from smsgw.errors import (
    MethodNotAllowed,
    NotFound,
    NothingAccepted,
    OutcomeUnknownProblem,
    PayloadTooLarge,
    ProblemError,
    ServiceUnavailable,
    StoreOutcomeUnknown,
    StoreUnavailable,
    UnsupportedMedia,
)
from smsgw.gateway.context import REDIS_ERROR, RETRY_ADVICE

__all__ = ["PROBLEM_JSON", "answer", "problem_response"]

PROBLEM_JSON = "application/problem+json"
CLIENT_CLOSED = 499  # nginx's code for a request whose client went away; never reaches anyone
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


def _retry_advice(request: web.Request, message_id: str) -> str:
    """Only a retry with the same Idempotency-Key is safe: a caller who sent none must look before sending
    again (the message's id is in the answer), and an endpoint with its own rule says it."""
    if RETRY_ADVICE in request:
        return request[RETRY_ADVICE]
    if request.headers.get("Idempotency-Key"):
        return "Retrying with the same Idempotency-Key is safe."
    return (
        f"This request had no Idempotency-Key, so a retry may send it twice: GET /v1/messages/{message_id} "
        "answers 404 if it was not stored."
    )


def _nothing_accepted(request: web.Request) -> str:
    """True of this request only: with a key, an earlier request with it may have been stored, which only a
    retry with the same key can find (Redis could not be asked)."""
    if request.headers.get("Idempotency-Key"):
        return (
            "nothing was accepted by this request; retry later with the same Idempotency-Key "
            "(it answers an earlier request's message if one was stored)"
        )
    return "nothing was accepted, retry later"


def answer(request: web.Request, exc: Exception) -> web.Response:
    """The problem details for any exception a handler raised (redirects are re-raised as they are)."""
    if isinstance(exc, ProblemError):
        return problem_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return problem_response(_from_http(exc))
    if isinstance(exc, StoreOutcomeUnknown):
        log.warning("redis.outcome_unknown", message_id=exc.message_id)
        request[REDIS_ERROR] = True
        detail = f"message {exc.message_id}: {exc}. {_retry_advice(request, exc.message_id)}"
        return problem_response(OutcomeUnknownProblem(detail))
    if isinstance(exc, StoreUnavailable):
        log.warning("redis.unavailable", error=str(exc))
        request[REDIS_ERROR] = True
        # "Nothing was accepted" only where it was proven (an accept); any other write may have happened.
        proven = isinstance(exc, NothingAccepted)
        advice = _nothing_accepted(request) if proven else "retry later"
        return problem_response(ServiceUnavailable(f"{exc}; {advice}", nothing_changed=proven))
    if isinstance(exc, ConnectionError):  # the caller hung up mid-request: nobody to answer, nothing broken
        log.info("request.client_gone", error=type(exc).__name__)
        problem = ProblemError("the client closed the connection")
        problem.status, problem.title = CLIENT_CLOSED, "Client closed request"
        return problem_response(problem)
    log.error("request.failed", exc_info=exc)
    return problem_response(ProblemError("an unexpected error occurred; it has been logged"))
