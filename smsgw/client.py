"""A small typed async client for the gateway's API, for internal Python callers.

Why a client at all: every caller would otherwise hand-roll the same JSON, problem-details parsing, SSE
framing and retry rules, and get the unsafe part (retrying a send) subtly wrong. This module owns them once:

- answers become frozen dataclasses (``Message``, ``Recipient``, ``Event``) with real ``datetime`` values;
- every error answer becomes one exception class per status, carrying the RFC 9457 problem details;
- a send carries an ``Idempotency-Key`` (generated unless given), so a retry after a lost answer, a 429 or a
  503 can never send twice: the gateway replays the original answer instead; a send without a key is repeated
  only after an answer that proves nothing was stored;
- ``events()`` parses the server-sent event stream and resumes after a dropped connection from the last event
  id, or from the position the stream announced on connect when no event came yet.

It depends on aiohttp and the standard library only (no import from the rest of ``smsgw``), so a caller can
vendor this one file. The error tree::

    SmsGatewayClientError
    ├── TransportError              no usable answer: connection refused or cut, timeout, not JSON
    └── ApiError                    an HTTP error answer (status, type, title, detail, errors, retry_after)
        ├── BadRequestError         400 malformed request or header
        ├── UnauthorizedError       401 missing or unknown token
        ├── ForbiddenError          403 brand, OTP or admin permission missing
        ├── NotFoundError           404 unknown id, or another client's
        ├── ConflictError           409 nothing to cancel; an idempotent send still in flight
        ├── PayloadTooLargeError    413 body over 1 MiB
        ├── UnsupportedMediaTypeError  415
        ├── ValidationError         422 with ``errors``: one ``FieldError`` per bad field
        ├── RateLimitedError        429 with ``retry_after``
        ├── ServiceUnavailableError 503 Redis unavailable (``nothing_changed``: proven nothing was accepted)
        │   └── OutcomeUnknownError 503 ``/outcome-unknown``: maybe stored; retry only with the same key
        └── ServerError             any other 5xx
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import json
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote, urlencode

import aiohttp

__all__ = [
    "TERMINAL_STATUSES",
    "ApiError",
    "BadRequestError",
    "ConflictError",
    "Event",
    "FieldError",
    "ForbiddenError",
    "Message",
    "NotFoundError",
    "OutcomeUnknownError",
    "PayloadTooLargeError",
    "Priority",
    "RateLimitedError",
    "Recipient",
    "ServerError",
    "ServiceUnavailableError",
    "SmsGatewayClient",
    "SmsGatewayClientError",
    "TransportError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "Verification",
    "VerificationCheck",
]

Priority = Literal["otp", "transactional", "bulk"]
# Statuses that never change again (the contract's list); ``unknown`` is not one: a callback may settle it.
TERMINAL_STATUSES: Final = frozenset({"delivered", "failed", "error", "rejected", "expired", "cancelled"})

DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_RETRIES: Final = 2
# Longest Retry-After the client sleeps through by itself; a longer one is the caller's decision.
MAX_RETRY_WAIT: Final = 10.0
# The stream sends a keep-alive comment every 5 s: a read silent for much longer means a dead connection.
STREAM_READ_TIMEOUT: Final = 45.0
MAX_RECONNECT_WAIT: Final = 30.0
_BACKOFF_BASE: Final = 0.25
T = TypeVar("T")


# --- errors -----------------------------------------------------------------------------------------------


class SmsGatewayClientError(Exception):
    """Base of everything this client raises on purpose."""


class TransportError(SmsGatewayClientError):
    """No usable answer: the gateway was unreachable, the connection broke, it timed out, or it was not JSON.

    After a broken send it is not known whether the gateway accepted it; resending with the same
    ``idempotency_key`` is safe (the client does that itself while it has retries left).
    """


@dataclass(frozen=True, slots=True)
class FieldError:
    """One entry of a 422's ``errors``: ``field`` is ``to[3]`` for one number, ``""`` for the whole body."""

    field: str
    message: str


class ApiError(SmsGatewayClientError):
    """An HTTP error answer with its RFC 9457 problem details (filled in as well as possible otherwise)."""

    def __init__(
        self,
        status: int,
        *,
        type: str = "about:blank",
        title: str = "",
        detail: str = "",
        errors: Sequence[FieldError] = (),
        retry_after: float | None = None,
        nothing_changed: bool = False,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors: tuple[FieldError, ...] = tuple(errors)
        self.retry_after = retry_after
        self.nothing_changed = nothing_changed  # the gateway proved the call changed nothing (503)
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")


class BadRequestError(ApiError):
    """400: malformed JSON, header (``Idempotency-Key``) or parameter (``Last-Event-ID``)."""


class UnauthorizedError(ApiError):
    """401: the token is missing or unknown."""


class ForbiddenError(ApiError):
    """403: the client may not use this brand, OTP, or an admin call."""


class NotFoundError(ApiError):
    """404: no such message, or it belongs to another client (the gateway does not tell them apart)."""


class ConflictError(ApiError):
    """409: nothing could be cancelled, or a send with the same idempotency key is still being processed."""


class PayloadTooLargeError(ApiError):
    """413: the request body is over 1 MiB."""


class UnsupportedMediaTypeError(ApiError):
    """415: the body was not sent as JSON (never raised by this client's own calls)."""


class ValidationError(ApiError):
    """422: the request is not valid; ``errors`` names every bad field (each bad number separately)."""


class RateLimitedError(ApiError):
    """429: over the client's configured rate; ``retry_after`` says when to try again."""


class ServiceUnavailableError(ApiError):
    """503: the gateway's Redis is unavailable; retry after ``retry_after``. ``nothing_changed`` when the
    gateway proved the call changed nothing (a send: nothing was accepted), so that even a call that is not
    idempotent may be repeated; otherwise a write may have happened (a check, a cancel or a resend whose
    Redis reply timed out) and only an idempotent repeat is safe.

    Its subclass ``OutcomeUnknownError``: a send the gateway could not tell was stored or not.
    """


class OutcomeUnknownError(ServiceUnavailableError):
    """503 with problem type ``.../outcome-unknown``: the gateway cannot tell whether it stored the send.

    Redis' reply was lost or came after the gateway's deadline, so the message may be queued and sent.
    A retry with the same ``idempotency_key`` is safe: it answers the stored message, or stores it once
    (the client does that itself while it has retries left). Without a key a retry may send the message
    twice, so the client never repeats it then: whether a possible duplicate is acceptable is the caller's
    decision.
    """


class ServerError(ApiError):
    """Any other 5xx: a gateway bug or a proxy in between."""


_ERRORS: Final[dict[int, type[ApiError]]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: ValidationError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def _error_class(status: int) -> type[ApiError]:
    return _ERRORS.get(status, ServerError if status >= 500 else ApiError)


# --- resources ------------------------------------------------------------------------------------------


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _optional_time(value: str | None) -> datetime | None:
    return None if value is None else _time(value)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One number of a message and where it stands."""

    number: str
    status: str
    provider_sms_id: str | None
    updated_at: datetime
    error: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recipient:
        return cls(
            number=data["number"],
            status=data["status"],
            provider_sms_id=data.get("provider_sms_id"),
            updated_at=_time(data["updated_at"]),
            error=data.get("error"),
        )

    @property
    def is_final(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Message:
    """The message resource. ``status`` is the recipients' common status, or ``mixed``. ``recipients`` is None
    when asked for without them (``minimal=True``: large messages; page with ``recipients()`` instead)."""

    id: str
    status: str
    counts: Mapping[str, int]
    priority: str
    brand_id: int
    reference: str | None
    segments: int
    encoding: str
    created_at: datetime
    send_at: datetime | None
    expires_at: datetime
    recipients: tuple[Recipient, ...] | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        return cls(
            id=data["id"],
            status=data["status"],
            counts=dict(data.get("counts", {})),
            priority=data["priority"],
            brand_id=int(data["brand_id"]),
            reference=data.get("reference"),
            segments=int(data["segments"]),
            encoding=data["encoding"],
            created_at=_time(data["created_at"]),
            send_at=_optional_time(data.get("send_at")),
            expires_at=_time(data["expires_at"]),
            recipients=(
                tuple(Recipient.from_json(r) for r in data["recipients"]) if "recipients" in data else None
            ),
        )

    @property
    def is_final(self) -> bool:
        """Every recipient reached a status that never changes again: no need to poll any more."""
        return all(status in TERMINAL_STATUSES for status in self.counts)


@dataclass(frozen=True, slots=True)
class Event:
    """One status change of one recipient. Keep ``id``: ``events(last_event_id=id)`` resumes after it."""

    id: str
    message_id: str
    client: str
    reference: str | None
    number: str
    status: str
    provider_sms_id: str | None
    provider_status_id: int | None
    occurred_at: datetime

    @classmethod
    def from_json(cls, event_id: str, data: Mapping[str, Any]) -> Event:
        return cls(
            id=event_id,
            message_id=data["message_id"],
            client=data["client"],
            reference=data.get("reference"),
            number=data["number"],
            status=data["status"],
            provider_sms_id=data.get("provider_sms_id"),
            provider_status_id=data.get("provider_status_id"),
            occurred_at=_time(data["occurred_at"]),
        )


# --- server-sent events ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _SseParser:
    """The WHATWG event-stream rules, line by line: ``data`` lines join, a blank line dispatches, ``:`` is a
    comment (the gateway's keep-alives), and ``id`` persists as the last event id even across events."""

    last_id: str | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> tuple[str | None, str, str] | None:
        """One line without its terminator; returns (id, event type, data) when an event is complete."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            dispatched = (self.last_id, self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return dispatched
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None


# --- the client -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Position:
    """Where a reconnect resumes: the last event handed out, or the position the stream announced."""

    last_id: str | None


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


@dataclass(frozen=True, slots=True)
class _Retry:
    """When one call may be retried: which failures are safe to repeat for it."""

    # Repeating the call is harmless even if the first attempt took effect (a read, a send with an
    # idempotency key): then it may also follow a timeout, a cut connection or an answer that does not
    # prove that nothing happened.
    repeatable: bool
    conflict: bool = False  # 409 "still being processed" of our own earlier attempt (idempotent sends)


# --- phone verification (/v1/verifications) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verification:
    """A phone verification. The code is never in it: the user reads it from the SMS and your service checks
    it with ``check_verification``."""

    id: str
    to: str
    status: str  # pending | approved | failed | expired
    expires_at: datetime
    sends: int
    attempts: int
    message_id: str
    reference: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verification:
        return cls(
            id=data["id"],
            to=data["to"],
            status=data["status"],
            expires_at=_time(data["expires_at"]),
            sends=int(data["sends"]),
            attempts=int(data["attempts"]),
            message_id=data["message_id"],
            reference=data.get("reference"),
        )

    @property
    def is_final(self) -> bool:
        return self.status != "pending"


@dataclass(frozen=True, slots=True)
class VerificationCheck:
    """What a check did: ``approved`` (the number is verified), ``pending`` (wrong code, try again),
    ``failed`` (too many wrong codes) or ``expired``."""

    status: str
    attempts: int

    @property
    def approved(self) -> bool:
        return self.status == "approved"


class _VerificationCalls:
    """The verification endpoints (a mixin of ``SmsGatewayClient``, kept apart from the messages' calls).

    A fraud block is a ``RateLimitedError`` whose ``type`` ends with ``/fraud-suspected``.
    """

    _idempotency_keys: bool

    async def _call(
        self,
        method: str,
        path: str,
        retry: _Retry,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        raise NotImplementedError

    async def start_verification(
        self,
        to: str,
        *,
        brand_id: int | None = None,
        code_length: int | None = None,
        ttl: int | timedelta | None = None,
        locale: Literal["en", "ka"] | None = None,
        reference: str | None = None,
        idempotency_key: str | None = None,
    ) -> Verification:
        """Send a code to ``to`` (201); retried safely like ``send`` (an ``Idempotency-Key`` per call).

        :raises RateLimitedError: an abuse limit or the pumping guard (``retry_after`` says when).
        """
        body: dict[str, Any] = {"to": to}
        for name, value in (("brand_id", brand_id), ("code_length", code_length), ("locale", locale)):
            if value is not None:
                body[name] = value
        if ttl is not None:
            body["ttl"] = int(ttl.total_seconds()) if isinstance(ttl, timedelta) else ttl
        if reference is not None:
            body["reference"] = reference
        key = idempotency_key or (str(uuid.uuid4()) if self._idempotency_keys else None)
        data = await self._call(
            "POST",
            "/v1/verifications",
            _Retry(repeatable=key is not None, conflict=key is not None),
            json_body=body,
            headers={"Idempotency-Key": key} if key else {},
        )
        return Verification.from_json(data)

    async def resend_verification(self, verification_id: str) -> Verification:
        """Send the same code again. Not repeated after a broken connection (it may have sent).

        :raises RateLimitedError: within the cooldown or beyond the sends limit.
        :raises ConflictError: the verification is no longer pending.
        """
        path = f"/v1/verifications/{_segment(verification_id)}/resend"
        return Verification.from_json(await self._call("POST", path, _Retry(False)))

    async def check_verification(self, verification_id: str, code: str) -> VerificationCheck:
        """Check the code the user typed. Every check of a pending verification counts as an attempt, so it is
        not repeated after a broken connection.

        :raises ConflictError: it was approved already (a code is good once).
        """
        path = f"/v1/verifications/{_segment(verification_id)}/check"
        data = await self._call("POST", path, _Retry(False), json_body={"code": code})
        return VerificationCheck(status=data["status"], attempts=int(data["attempts"]))

    async def get_verification(self, verification_id: str) -> Verification:
        path = f"/v1/verifications/{_segment(verification_id)}"
        return Verification.from_json(await self._call("GET", path, _Retry(True)))


class SmsGatewayClient(_VerificationCalls):
    """The gateway's ``/v1`` API. Use as ``async with SmsGatewayClient(url, token) as client: ...``.

    :param base_url: the gateway's root, e.g. ``http://sms-gateway:8080`` (without ``/v1``).
    :param token: the client's bearer token (the gateway only knows its sha256).
    :param timeout: seconds for one whole request/answer; the event stream uses it for connecting only.
    :param retries: how often a call is repeated after a 429, a 503 or (when repeating is safe) a transport
        failure, waiting ``Retry-After`` or an exponential backoff in between. ``0`` raises at once.
    :param idempotency_keys: give every send without an explicit ``idempotency_key`` a random one, so that
        its retries are safe. Without a key, a send is repeated only after an answer that proves nothing
        was stored (a 429, a 503 of the gateway other than ``/outcome-unknown``, a refused connection),
        never after a timeout, a cut connection, ``OutcomeUnknownError`` or a 503 that is not the gateway's.
    :param session: an aiohttp session to use (and not close); by default the client owns one.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        idempotency_keys: bool = True,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        assert timeout > 0, "timeout must be positive"
        assert retries >= 0, "retries must not be negative"
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connect_timeout = timeout
        self._retries = retries
        self._idempotency_keys = idempotency_keys
        self._session = session
        self._owns_session = session is None
        self._state = _State.UNOPENED

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"SmsGatewayClient({self._base!r})"

    async def __aenter__(self) -> SmsGatewayClient:
        if self._state is not _State.UNOPENED:
            raise RuntimeError("an SmsGatewayClient can be opened only once")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._state = _State.OPENED
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the owned session; calling it again does nothing."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._owns_session and self._session is not None:
            await self._session.close()

    # --- calls --------------------------------------------------------------------------------------------

    async def send(
        self,
        to: str | Sequence[str],
        text: str,
        *,
        brand_id: int | None = None,
        priority: Priority = "transactional",
        send_at: datetime | None = None,
        validity: int | timedelta | None = None,
        stop_list: bool = True,
        reference: str | None = None,
        idempotency_key: str | None = None,
        minimal: bool = False,
    ) -> Message:
        """Send ``text`` to one or more numbers; returns the accepted message (202: durably stored).

        :param to: numbers in any usual notation (``+995 511 19-42-42``); the gateway normalises them.
        :param send_at: an aware datetime (a naive one has no meaning across machines: ``ValueError``).
        :param validity: how long the message may wait to be handed to uBill before it expires.
        :param idempotency_key: reuse the same key to make a resend after a crash safe across processes;
            by default a fresh one is made per call, which covers this call's own retries.
        :param minimal: answer without ``recipients`` (``Prefer: return=minimal``): for large messages.
        :raises ValidationError: with one ``FieldError`` per bad field or number.
        :raises OutcomeUnknownError: the gateway could not tell whether it stored the message (raised without
            a key, or once retries ran out; resend with the same ``idempotency_key`` to settle it).
        """
        body: dict[str, Any] = {
            "to": to if isinstance(to, str) else list(to),
            "text": text,
            "priority": priority,
        }
        if brand_id is not None:
            body["brand_id"] = brand_id
        if send_at is not None:
            if send_at.tzinfo is None or send_at.utcoffset() is None:
                raise ValueError("send_at must be timezone-aware")
            body["send_at"] = send_at.isoformat()
        if validity is not None:
            body["validity"] = int(validity.total_seconds()) if isinstance(validity, timedelta) else validity
        if not stop_list:
            body["stop_list"] = False
        if reference is not None:
            body["reference"] = reference
        key = idempotency_key or (str(uuid.uuid4()) if self._idempotency_keys else None)
        headers = {"Idempotency-Key": key} if key else {}
        if minimal:
            headers["Prefer"] = "return=minimal"
        data = await self._call(
            "POST",
            "/v1/messages",
            _Retry(repeatable=key is not None, conflict=key is not None),
            json_body=body,
            headers=headers,
        )
        return Message.from_json(data)

    async def get(self, message_id: str, *, minimal: bool = False) -> Message:
        """The message with each recipient's current status (``minimal``: only ``counts``, no recipients)."""
        headers = {"Prefer": "return=minimal"} if minimal else None
        path = f"/v1/messages/{_segment(message_id)}"
        return Message.from_json(await self._call("GET", path, _Retry(True), headers=headers))

    async def recipients(
        self, message_id: str, *, status: str | None = None, page_size: int = 1_000
    ) -> AsyncGenerator[Recipient, None]:
        """Every recipient of a message (of one ``status`` if given), in request order, a page at a time:
        each page shows statuses as they are when it is read."""
        cursor: str | None = None
        while True:
            query: dict[str, str] = {"limit": str(page_size)}
            if status is not None:
                query["status"] = status
            if cursor is not None:
                query["cursor"] = cursor
            path = f"/v1/messages/{_segment(message_id)}/recipients?{urlencode(query)}"
            page = await self._call("GET", path, _Retry(True))
            for item in page["recipients"]:
                yield Recipient.from_json(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def cancel(self, message_id: str) -> Message:
        """Cancel every recipient not yet handed to uBill; returns the message afterwards.

        :raises ConflictError: nothing could be cancelled (all handed over or final). Not retried after a
            broken connection: a repeat of a cancel that did happen would answer this same 409.
        """
        path = f"/v1/messages/{_segment(message_id)}"
        return Message.from_json(await self._call("DELETE", path, _Retry(False)))

    async def events(
        self, last_event_id: str | None = None, *, reconnect: bool = True
    ) -> AsyncGenerator[Event, None]:
        """The client's own status events, as they happen, forever (cancel or break to stop).

        Without ``last_event_id`` the stream starts with the next event; with one (an ``Event.id`` kept from
        before, or ``"0"`` for everything the gateway still keeps, at least 24 h) it first replays what came
        after it. A dropped connection, a 429 or a 503 is followed by a reconnect from the last event seen,
        or, before the first one, from the position the stream announced when it connected, so no event is
        lost or repeated; ``reconnect=False`` raises instead. Wrap the iterator in ``contextlib.aclosing``
        to close its connection as soon as you stop.
        """
        position = _Position(last_event_id)
        failures = 0
        while True:
            try:
                async for event in self._stream(position):
                    failures = 0
                    yield event
                if not reconnect:
                    return
                wait = _backoff(failures)  # the server ended the stream (e.g. a restart): come back soon
            except (TransportError, RateLimitedError, ServiceUnavailableError) as exc:
                if not reconnect:
                    raise
                wait = getattr(exc, "retry_after", None) or _backoff(failures)
            failures += 1
            await asyncio.sleep(min(wait, MAX_RECONNECT_WAIT))

    # --- plumbing -----------------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._state is not _State.OPENED or self._session is None:
            raise RuntimeError("use the client inside 'async with SmsGatewayClient(...) as client'")
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        retry: _Retry,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            return await self._request(method, path, json_body=json_body, headers=headers)

        return await self._with_retries(once, retry)

    async def _with_retries(self, once: Callable[[], Awaitable[T]], retry: _Retry) -> T:
        attempt = 0
        while True:
            try:
                return await once()
            except (RateLimitedError, ServiceUnavailableError, ConflictError, TransportError) as exc:
                wait = self._retry_wait(exc, retry, attempt)
                if wait is None:
                    raise
            attempt += 1
            await asyncio.sleep(wait)

    def _retry_wait(self, exc: SmsGatewayClientError, retry: _Retry, attempt: int) -> float | None:
        """Seconds to wait before repeating after ``exc``, or None when it must be raised."""
        if attempt >= self._retries:
            return None
        if isinstance(exc, TransportError):
            # A refused connection never reached the gateway: repeating anything is safe then.
            safe = retry.repeatable or isinstance(exc.__cause__, aiohttp.ClientConnectorError)
            return _backoff(attempt) if safe else None
        if isinstance(exc, ConflictError) and not retry.conflict:
            return None
        assert isinstance(exc, ApiError)
        if not retry.repeatable and not _nothing_stored(exc):
            return None
        if exc.retry_after is not None and exc.retry_after > MAX_RETRY_WAIT:
            return None
        return exc.retry_after if exc.retry_after is not None else _backoff(attempt)

    async def _request(
        self, method: str, path: str, *, json_body: Any = None, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        session = self._http()
        try:
            async with session.request(
                method,
                self._base + path,
                json=json_body,
                headers={**self._headers, **(headers or {})},
                timeout=self._timeout,
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise _api_error(response, raw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise TransportError(f"{method} {path}: the answer is not JSON") from exc
        if not isinstance(data, dict):
            raise TransportError(f"{method} {path}: the answer is not a JSON object")
        return data

    async def _stream(self, position: _Position) -> AsyncGenerator[Event, None]:
        """One connection to ``/v1/events``: its events until the server ends it or it breaks.

        ``position`` follows every complete frame: an event handed out, one skipped, or a frame without data
        (the stream's announced position), so a reconnect resumes exactly after what was dealt with.
        """
        session = self._http()
        headers = {**self._headers, "Accept": "text/event-stream"}
        if position.last_id is not None:
            headers["Last-Event-ID"] = position.last_id
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout, sock_read=STREAM_READ_TIMEOUT
        )
        parser = _SseParser(last_id=position.last_id)
        try:
            async with session.get(self._base + "/v1/events", headers=headers, timeout=timeout) as response:
                if response.status >= 400:
                    raise _api_error(response, await response.read())
                async for raw_line in response.content:
                    line = raw_line.decode("utf-8").rstrip("\r\n")
                    frame = parser.feed(line)
                    if frame is None:
                        if not line and parser.last_id is not None:
                            position.last_id = parser.last_id  # a frame that ended without data
                        continue
                    event_id, kind, data = frame
                    if kind != "status" or event_id is None:
                        position.last_id = event_id or position.last_id
                        continue  # a kind this client does not know yet: skip it, keep the stream
                    event = Event.from_json(event_id, json.loads(data))
                    position.last_id = event.id
                    yield event
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError, ValueError) as exc:
            raise TransportError(f"event stream: {type(exc).__name__}: {exc}") from exc


def _nothing_stored(exc: ApiError) -> bool:
    """The answer proves the call changed nothing: a 429, or a gateway 503 that says so
    (``"nothing_changed": true``). Any other 503 may follow a write that happened: a proxy's (it may have
    forwarded the call), ``/outcome-unknown``, or a check or cancel whose Redis reply timed out."""
    if isinstance(exc, RateLimitedError):
        return True
    return isinstance(exc, ServiceUnavailableError) and exc.nothing_changed


def _segment(value: str) -> str:
    """One URL path segment: an id can never walk to another path."""
    return quote(value, safe="")


def _backoff(attempt: int) -> float:
    return min(MAX_RETRY_WAIT, _BACKOFF_BASE * 2.0**attempt)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _api_error(response: aiohttp.ClientResponse, raw: bytes) -> ApiError:
    """The exception for an error answer, from its problem details (or whatever the body offers)."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": raw.decode("utf-8", "replace")[:500]}
    errors = [
        FieldError(str(e.get("field", "")), str(e.get("message", "")))
        for e in body.get("errors") or ()
        if isinstance(e, dict)
    ]
    problem_type = str(body.get("type", "about:blank"))
    cls = _error_class(response.status)
    if response.status == 503 and problem_type.endswith("/outcome-unknown"):
        cls = OutcomeUnknownError
    return cls(
        response.status,
        type=problem_type,
        title=str(body.get("title") or response.reason or ""),
        detail=str(body.get("detail", "")),
        errors=errors,
        retry_after=_retry_after(response.headers.get("Retry-After")),
        nothing_changed=body.get("nothing_changed") is True,
    )
