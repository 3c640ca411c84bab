"""Everything the project knows about uBill's API, in one module (see shared/ubill-api.md).

Base URL, parameter names, statusID tables, the local time zone, answer and callback parsing, and the
classification of every outcome into accepted / ``ProviderRefused`` / ``ProviderUnavailable`` /
``ProviderOutcomeUnknown``. A correction to what we know of uBill is a change to this file only.

The API key travels in the query string of GET calls, so no URL built here is ever put in a message,
a log line or a chained exception: errors are rebuilt from the exception's class and raised ``from None``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Final
from zoneinfo import ZoneInfo

import aiohttp
from yarl import URL

from smsgw.errors import ProviderOutcomeUnknown, ProviderRefused, ProviderUnavailable
from smsgw.settings import Secret

__all__ = [
    "APPROVED",
    "DATE_FORMAT",
    "REFUSALS",
    "SEND_TIME_FORMAT",
    "TBILISI",
    "Brand",
    "Callback",
    "UbillClient",
    "format_local",
    "parse_brands",
    "parse_callback",
    "parse_send_time",
]

TBILISI: Final = ZoneInfo("Asia/Tbilisi")
DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S"  # callbacks
SEND_TIME_FORMAT: Final = "%Y-%m-%d %H:%M"  # sendTime

# Send refusals (statusID != 0), as seen in public clients.
REFUSALS: Final[dict[int, str]] = {
    10: "brand not found",
    20: "numbers not found",
    30: "empty text",
    40: "insufficient balance",
    50: "no valid numbers",
    90: "JSON error",
    99: "general error",
}
APPROVED: Final = "1"  # brandNames' ``authorized``: "1" approved, anything else (seen: "2") pending
MAX_BRANDS: Final = 1_000  # an account has a handful; a reading is bounded whatever uBill answers
_SMS_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NUMBER = re.compile(r"^\d{6,15}$")


@dataclass(frozen=True)
class Callback:
    sms_id: str
    number: str
    status_id: int
    occurred_at: datetime


@dataclass(frozen=True)
class Brand:
    """One entry of uBill's ``brandNames``: sender name, approval and creation time as uBill gave them."""

    id: int
    name: str
    authorized: str
    created_at: str

    @property
    def approved(self) -> bool:
        return self.authorized == APPROVED


def parse_brands(body: Mapping[str, Any]) -> list[Brand]:
    """``brandNames``' list, from ``brands`` or ``data`` (public clients show both), ids as integers whether
    uBill sends ``1`` or ``"1"``; entries without a usable id are skipped."""
    items = body.get("brands")
    if not isinstance(items, list) or not items:
        items = body.get("data")
    out: list[Brand] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        raw_id = item.get("id")
        if isinstance(raw_id, bool) or not str(raw_id).strip().isdigit():
            continue
        created = item.get("createdAt")
        out.append(
            Brand(
                id=int(str(raw_id).strip()),
                name=str(item.get("name") or ""),
                authorized=str(item.get("authorized", "")).strip(),
                created_at=created if isinstance(created, str) else "",
            )
        )
    return out[:MAX_BRANDS]


def refusal_reason(status_id: int) -> str:
    return REFUSALS.get(status_id, f"unknown statusID {status_id}")


def send_params(numbers: list[str], text: str, brand_id: int, otp: bool, stop_list: bool) -> dict[str, str]:
    params = {"brandID": str(brand_id), "numbers": ",".join(numbers), "text": text}
    if not stop_list:
        params["stopList"] = "false"
    if otp:
        params["otp"] = "true"
    return params


def _send_url(base_url: str, key: str, params: dict[str, str]) -> URL:
    return URL(base_url + "/sms/send").with_query({"key": key, **params})


def parse_callback(query: Mapping[str, str]) -> Callback:
    """Validate a delivery callback's parameters (not the key); ``ValueError`` names the bad one."""
    sms_id = query.get("smsID", "")
    if not _SMS_ID.match(sms_id):
        raise ValueError("smsID: missing or malformed")
    # "+995…" is tolerated: a 400 would make uBill retry a callback we can read forever.
    number = query.get("number", "").removeprefix("+")
    if not _NUMBER.match(number):
        raise ValueError("number: missing or not international digits")
    raw_status = query.get("statusID", "")
    if not raw_status.isdigit() or int(raw_status) not in (0, 1, 2, 3, 4):
        raise ValueError("statusID: must be 0, 1, 2, 3 or 4")
    try:
        local = datetime.strptime(query.get("date", ""), DATE_FORMAT)
        occurred = local.replace(tzinfo=TBILISI).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("date: expected Y-m-d H:i:s") from None
    return Callback(sms_id, number, int(raw_status), occurred)


def format_local(moment: datetime, fmt: str = DATE_FORMAT) -> str:
    """A UTC moment in uBill's local time (callbacks' ``date``, ``sendTime``)."""
    return moment.astimezone(TBILISI).strftime(fmt)


def parse_send_time(raw: str) -> datetime:
    """``sendTime`` (``Y-m-d H:i``, Asia/Tbilisi) as an aware UTC datetime (``ValueError`` when not one)."""
    try:
        return datetime.strptime(raw, SEND_TIME_FORMAT).replace(tzinfo=TBILISI).astimezone(UTC)
    except OverflowError:
        raise ValueError("sendTime out of range") from None


def _status_id(body: Mapping[str, Any]) -> int:
    raw = body.get("statusID")
    if isinstance(raw, bool) or raw is None:
        raise ValueError("no statusID")
    return int(raw)


class UbillClient:
    """uBill's send, report, balance and brand calls, each bounded by a total timeout."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: Secret,
        *,
        timeout: float,
        connect_timeout: float,
        max_url_length: int,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._max_url_length = max_url_length

    @staticmethod
    def trace_config() -> aiohttp.TraceConfig:
        """Marks a request as 'left' once it has a connection: a timeout after that is ambiguous."""
        trace = aiohttp.TraceConfig()

        async def connected(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
            if ctx.trace_request_ctx is not None:
                ctx.trace_request_ctx["connected"] = True

        trace.on_connection_create_end.append(connected)
        trace.on_connection_reuseconn.append(connected)
        return trace

    async def send(
        self, numbers: list[str], text: str, brand_id: int, *, otp: bool, stop_list: bool
    ) -> str | None:
        """Hand numbers to uBill; returns the call's smsID (None if uBill accepted without one)."""
        params = send_params(numbers, text, brand_id, otp, stop_list)
        url = _send_url(self._base, self._key.reveal(), params)
        if len(str(url)) <= self._max_url_length:
            body = await self._call("GET", url, None, sends=True)
        else:  # a long text or many numbers: a POST JSON body has no URL limit
            payload: dict[str, Any] = {**params, "brandID": brand_id, "numbers": numbers}
            body = await self._call("POST", URL(self._base + "/sms/send"), payload, sends=True)
        sms_id = body.get("smsID")
        return None if sms_id in (None, "") else str(sms_id)

    async def report(self, sms_id: str) -> list[tuple[str, int]]:
        """Per-number callback codes of one smsID (used to settle recipients whose callbacks never came)."""
        body = await self._call("GET", self._url(f"/sms/report/{sms_id}"), None, sends=False)
        result = body.get("result") or []
        out = []
        for item in result if isinstance(result, list) else []:
            if isinstance(item, dict) and str(item.get("statusID", "")).isdigit():
                out.append((str(item.get("number", "")), int(item["statusID"])))
        return out

    async def balance(self) -> int:
        body = await self._call("GET", self._url("/sms/balance"), None, sends=False)
        sms = str(body.get("sms", "")).strip()
        if not sms.lstrip("-").isdigit():  # no balance is not a balance of 0
            raise ProviderUnavailable("uBill answered the balance call without a number of SMS", "bad_answer")
        return int(sms)

    async def brands(self) -> list[Brand]:
        body = await self._call("GET", self._url("/sms/brandNames"), None, sends=False)
        return parse_brands(body)

    def _url(self, path: str) -> URL:
        return URL(self._base + path).with_query({"key": self._key.reveal()})

    async def _call(self, method: str, url: URL, payload: Any, *, sends: bool) -> dict[str, Any]:
        ctx: dict[str, bool] = {"connected": False}
        try:
            async with self._session.request(
                method,
                url,
                json=payload,
                headers={"key": self._key.reveal()},
                timeout=self._timeout,
                trace_request_ctx=ctx,
                allow_redirects=False,
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise ProviderUnavailable(
                f"cannot connect to uBill ({type(exc).__name__})", "connect_error"
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._lost(exc, ctx["connected"], sends) from None
        return self._decode(status, raw, retry_after)

    @staticmethod
    def _lost(exc: BaseException, connected: bool, sends: bool) -> Exception:
        kind = "timeout" if isinstance(exc, TimeoutError | asyncio.TimeoutError) else "disconnected"
        reason = f"no answer from uBill ({type(exc).__name__})"
        if connected and sends:
            return ProviderOutcomeUnknown(reason, kind)
        return ProviderUnavailable(reason, kind)

    @staticmethod
    def _decode(status: int, raw: bytes, retry_after: str | None) -> dict[str, Any]:
        """Every answer is classified here: 429 and 5xx are unavailability, anything without a JSON statusID
        is a bad answer (retried), ``statusID != 0`` is a refusal (final), 0 is the body to read."""
        if status == 429:
            delay = float(retry_after) if retry_after and retry_after.isdigit() else None
            raise ProviderUnavailable("uBill answered 429", "rate_limited", delay)
        if status >= 500:
            raise ProviderUnavailable(f"uBill answered HTTP {status}", "server_error")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ProviderUnavailable(f"uBill answered HTTP {status} without JSON", "bad_answer") from None
        if not isinstance(body, dict) or not str(body.get("statusID", "")).lstrip("-").isdigit():
            raise ProviderUnavailable(f"uBill answered HTTP {status} without a statusID", "bad_answer")
        status_id = _status_id(body)
        if status_id != 0:
            raise ProviderRefused(status_id, str(body.get("message") or refusal_reason(status_id)))
        return body
