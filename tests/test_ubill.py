"""uBill's module: callback parsing, and how every answer of uBill's send is classified."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from smsgw.devtools.redis import free_port
from smsgw.errors import ProviderError, ProviderOutcomeUnknown, ProviderRefused, ProviderUnavailable
from smsgw.settings import Secret
from smsgw.ubill import Brand, UbillClient, parse_callback
from tests.harness import serve

VALID = {
    "key": "k",
    "smsID": "117345",
    "number": "995511194242",
    "statusID": "1",
    "date": "2026-02-01 12:02:02",
}


def test_callback_date_is_tbilisi_time() -> None:
    callback = parse_callback(VALID)
    assert callback.occurred_at == datetime(2026, 2, 1, 8, 2, 2, tzinfo=UTC)  # UTC+4
    assert (callback.sms_id, callback.number, callback.status_id) == ("117345", "995511194242", 1)


def test_callback_number_with_a_plus_is_read_as_international() -> None:
    assert parse_callback({**VALID, "number": "+995511194242"}).number == "995511194242"


@pytest.mark.parametrize("date", ["0001-01-01 00:00:00", "2026-02-01T12:02:02", "2026-02-30 10:00:00"])
def test_callback_date_out_of_range_or_format_is_refused(date: str) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_callback({**VALID, "date": date})


# --- how every answer of uBill is classified (a real HTTP server playing each answer) ---


def _answer(status: int, body: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=body, headers=headers)


ANSWERS = {
    "ok": lambda: _answer(200, '{"statusID": 0, "smsID": 117345, "message": "Success"}'),
    "refused": lambda: _answer(200, '{"statusID": 40, "message": "Insufficient balance"}'),
    "refused-4xx": lambda: _answer(400, '{"statusID": 10}'),
    "server-error": lambda: _answer(503, '{"statusID": 99}'),
    "rate-limited": lambda: _answer(429, "slow down", {"Retry-After": "7"}),
    "html": lambda: _answer(200, "<html>maintenance</html>"),
    "no-status": lambda: _answer(200, '{"smsID": 1}'),
}


async def _client(url: str, timeout: float = 1.0) -> tuple[aiohttp.ClientSession, UbillClient]:
    session = aiohttp.ClientSession(trace_configs=[UbillClient.trace_config()])
    client = UbillClient(
        session, url, Secret("secret-key-123"), timeout=timeout, connect_timeout=0.5, max_url_length=8000
    )
    return session, client


@pytest.mark.parametrize(
    ("answer", "expected", "outcome"),
    [
        ("refused", ProviderRefused, "refused"),
        ("refused-4xx", ProviderRefused, "refused"),
        ("server-error", ProviderUnavailable, "server_error"),
        ("rate-limited", ProviderUnavailable, "rate_limited"),
        ("html", ProviderUnavailable, "bad_answer"),
        ("no-status", ProviderUnavailable, "bad_answer"),
    ],
)
async def test_every_answer_is_classified(answer: str, expected: type[ProviderError], outcome: str) -> None:
    app = web.Application()
    app.router.add_get("/v1/sms/send", lambda _r: asyncio.sleep(0, ANSWERS[answer]()))
    runner, url = await serve(app)
    session, client = await _client(url + "/v1")
    try:
        with pytest.raises(expected) as raised:
            await client.send(["995511194242"], "hi", 1, otp=False, stop_list=True)
        assert raised.value.outcome == outcome
        assert "secret-key-123" not in str(raised.value)
        if answer == "rate-limited":
            assert isinstance(raised.value, ProviderUnavailable) and raised.value.retry_after == 7
    finally:
        await session.close()
        await runner.cleanup()


async def test_acceptance_returns_the_sms_id() -> None:
    app = web.Application()
    app.router.add_get("/v1/sms/send", lambda _r: asyncio.sleep(0, ANSWERS["ok"]()))
    runner, url = await serve(app)
    session, client = await _client(url + "/v1")
    try:
        assert await client.send(["995511194242"], "hi", 1, otp=True, stop_list=False) == "117345"
    finally:
        await session.close()
        await runner.cleanup()


@pytest.mark.parametrize(
    "body",
    [
        # uBill's docs: `data`, ids as strings; integers, a missing createdAt and junk entries are tolerated.
        '{"statusID": 0, "data": [{"id": "1", "name": "SMSGW", "authorized": "1", "createdAt": "2025-01-02 '
        '03:04:05"}, {"id": 2, "name": "Shop", "authorized": 2}, {"id": "x"}, {"name": "no id"}, 7]}',
        # Observed: `brands`, ids as integers (and `data` beside it, as our sandbox answers).
        '{"statusID": 0, "brands": [{"id": 1, "name": "SMSGW", "authorized": "1", "createdAt": "2025-01-02 '
        '03:04:05"}, {"id": "2", "name": "Shop", "authorized": "2"}], "data": []}',
    ],
)
async def test_brand_names_are_read_from_either_list(body: str) -> None:
    app = web.Application()
    app.router.add_get("/v1/sms/brandNames", lambda _r: asyncio.sleep(0, _answer(200, body)))
    runner, url = await serve(app)
    session, client = await _client(url + "/v1")
    try:
        brands = await client.brands()
    finally:
        await session.close()
        await runner.cleanup()
    assert brands == [
        Brand(1, "SMSGW", "1", "2025-01-02 03:04:05"),
        Brand(2, "Shop", "2", ""),
    ]
    assert [b.approved for b in brands] == [True, False]


async def test_refused_connection_is_safe_to_retry() -> None:
    session, client = await _client(f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            await client.send(["995511194242"], "hi", 1, otp=False, stop_list=True)
        assert raised.value.outcome == "connect_error"
    finally:
        await session.close()


async def test_no_answer_after_the_request_left_is_unknown() -> None:
    async def stall(_request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return ANSWERS["ok"]()

    app = web.Application()
    app.router.add_get("/v1/sms/send", stall)
    runner, url = await serve(app)
    session, client = await _client(url + "/v1", timeout=0.3)
    try:
        with pytest.raises(ProviderOutcomeUnknown) as raised:
            await client.send(["995511194242"], "hi", 1, otp=False, stop_list=True)
        assert raised.value.outcome == "timeout"
        assert "secret-key-123" not in repr(raised.value) and raised.value.__cause__ is None
    finally:
        await session.close()
        await runner.cleanup()
