"""The error tree, drawn once so every layer raises and catches the same names.

SmsGatewayError
├── SettingsError            a missing or malformed SMSGW_* variable: the process stops at start
├── ProblemError             an HTTP answer as RFC 9457 problem details (status, type, title, detail)
│   ├── BadRequest           400 malformed JSON or parameters
│   ├── Unauthorized         401 missing or unknown token
│   ├── Forbidden            403 brand, OTP or admin permission missing
│   ├── NotFound             404 unknown id, or one that belongs to another client
│   ├── Conflict             409 nothing to cancel, idempotent request still in flight
│   ├── PayloadTooLarge      413 body over 1 MiB
│   ├── UnsupportedMedia     415 not JSON
│   ├── ValidationFailed     422 with ``errors``: a list of {field, message}
│   ├── TooManyRequests      429 with Retry-After
│   ├── ServiceUnavailable   503 Redis unavailable (``nothing_changed`` where proven nothing was accepted)
│   └── OutcomeUnknownProblem  503 …/outcome-unknown: stored or not could not be established; retry with the
│                            same Idempotency-Key is safe
├── StoreError               what the Redis store could not do (raised only by smsgw.store)
│   ├── StoreUnavailable     Redis unreachable, too slow, or answering outage errors (OOM, MISCONF, READONLY)
│   │   └── NothingAccepted  … and an accept provably stored nothing (never sent, or found out)
│   └── StoreOutcomeUnknown  an accept's answer was lost and finding out failed too
└── ProviderError            what a call to uBill ended in (raised only by smsgw.ubill)
    ├── ProviderRefused      statusID != 0: a business refusal, never retried
    ├── ProviderUnavailable  connection refused, timeout before sending, 429, 5xx, non-JSON: retried
    └── ProviderOutcomeUnknown  the request left and no answer came back: never blindly resent
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "NothingAccepted",
    "OutcomeUnknownProblem",
    "PayloadTooLarge",
    "ProblemError",
    "ProviderError",
    "ProviderOutcomeUnknown",
    "ProviderRefused",
    "ProviderUnavailable",
    "ServiceUnavailable",
    "SettingsError",
    "SmsGatewayError",
    "StoreError",
    "StoreOutcomeUnknown",
    "StoreUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMedia",
    "ValidationFailed",
]

PROBLEM_BASE = "https://sms-gateway.internal/problems/"


class SmsGatewayError(Exception):
    """Base of everything this project raises on purpose."""


class SettingsError(SmsGatewayError):
    """A configuration value is missing or malformed; the message names the variable."""


class ProblemError(SmsGatewayError):
    status = 500
    slug = "internal"
    title = "Internal server error"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def body(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


class BadRequest(ProblemError):
    status, slug, title = 400, "bad-request", "Malformed request"


class Unauthorized(ProblemError):
    status, slug, title = 401, "unauthorized", "Missing or unknown bearer token"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="smsgw"'})


class Forbidden(ProblemError):
    status, slug, title = 403, "forbidden", "Not allowed for this client"


class NotFound(ProblemError):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(ProblemError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class Conflict(ProblemError):
    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(ProblemError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMedia(ProblemError):
    status, slug, title = 415, "unsupported-media-type", "Request body must be JSON"


class ValidationFailed(ProblemError):
    status, slug, title = 422, "validation", "The request is not valid"

    def __init__(self, errors: list[dict[str, str]], detail: str | None = None) -> None:
        summary = detail or "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
        if len(errors) > 3:
            summary += f"; and {len(errors) - 3} more"
        super().__init__(summary, errors=errors)
        self.errors = errors


class TooManyRequests(ProblemError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(ProblemError):
    """``nothing_changed``: the extension member ``"nothing_changed": true``, said only where proven (an
    accept that never reached Redis or was found out): a caller may repeat even a call not idempotent."""

    status, slug, title = 503, "unavailable", "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 1, *, nothing_changed: bool = False) -> None:
        extra = {"nothing_changed": True} if nothing_changed else {}
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, **extra)


class OutcomeUnknownProblem(ServiceUnavailable):
    slug, title = "outcome-unknown", "Outcome unknown"

    def __init__(self, detail: str, retry_after: int = 2) -> None:
        super().__init__(detail, retry_after)


class StoreError(SmsGatewayError):
    """The Redis store could not do what was asked. Messages name no key and no value."""


class StoreUnavailable(StoreError):
    """Redis is unreachable, too slow, or answering outage errors. A write cut by a timeout or a lost
    connection may still have happened; only ``NothingAccepted`` says it did not."""


class NothingAccepted(StoreUnavailable):
    """An accept that provably stored nothing: it never reached Redis, or finding out said so (the only
    ``StoreUnavailable`` answered "nothing was accepted")."""


class StoreOutcomeUnknown(StoreError):
    """A write whose answer was lost, and finding out whether it happened failed as well. ``message_id`` and
    ``deadline_ms`` (Redis's clock) let the caller ask again later (``Messages.resolve``)."""

    def __init__(self, detail: str, message_id: str, deadline_ms: int) -> None:
        super().__init__(detail)
        self.message_id = message_id
        self.deadline_ms = deadline_ms


class ProviderError(SmsGatewayError):
    """A uBill call that did not end in an acceptance. Messages never contain the key or a query string."""

    outcome = "error"


class ProviderRefused(ProviderError):
    """uBill answered ``statusID != 0``: the reason is final, a retry would be refused again."""

    outcome = "refused"

    def __init__(self, status_id: int, reason: str) -> None:
        super().__init__(f"uBill refused the call: statusID {status_id} ({reason})")
        self.status_id = status_id
        self.reason = reason


class ProviderUnavailable(ProviderError):
    """Nothing was sent (or uBill said so with a 429/5xx): safe to retry."""

    def __init__(self, reason: str, outcome: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome
        self.retry_after = retry_after


class ProviderOutcomeUnknown(ProviderError):
    """The request left and no usable answer came back: uBill may or may not have accepted it."""

    def __init__(self, reason: str, outcome: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome
