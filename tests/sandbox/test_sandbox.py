"""The sandbox over real sockets: uBill's endpoints, callbacks to a live receiver, faults, control routes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from smsgw.devtools.redis import free_port
from smsgw.sandbox import SandboxConfig, create_app
from smsgw.sandbox.state import Clock
from smsgw.ubill import DATE_FORMAT, SEND_TIME_FORMAT, TBILISI, format_local

KEY = "test-key"
NUMBER = "995511194242"
OTHER = "995599123456"
Client = TestClient[web.Request, web.Application]
MakeSandbox = Callable[..., Awaitable[Client]]


class Receiver:
    """A callback endpoint that records every call and fails the first ``failures`` tries of each one."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []
        self.failures = 0
        self.fail_status = 503
        self._tries: dict[tuple[str, ...], int] = {}
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.calls.append(query)
        ident = (query["smsID"], query["number"], query["statusID"])
        self._tries[ident] = self._tries.get(ident, 0) + 1
        if self._tries[ident] <= self.failures:
            return web.Response(status=self.fail_status)
        return web.Response(text="OK")

    def statuses(self, number: str = NUMBER) -> list[str]:
        return [c["statusID"] for c in self.calls if c["number"] == number]


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    rec = Receiver()
    app = web.Application()
    app.router.add_get("/cb", rec.handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/cb"))
    return rec


@pytest.fixture
def make_sandbox(aiohttp_client: AiohttpClient) -> MakeSandbox:
    """Build a sandbox from ``SMSGW_SANDBOX_*`` names given without the prefix (``latency="0.2"``)."""

    async def make(clock: Clock | None = None, **env: str) -> Client:
        settings = {"api_key": KEY, "callback_delay": "0.01", "seed": "7"} | env
        environ = {f"SMSGW_SANDBOX_{name.upper()}": value for name, value in settings.items()}
        config = SandboxConfig.from_env(environ)
        app = create_app(config) if clock is None else create_app(config, clock=clock)
        return await aiohttp_client(app)

    return make


async def send(client: Client, **params: str) -> tuple[int, dict[str, Any]]:
    query = {"key": KEY, "brandID": "1", "numbers": NUMBER, "text": "hello"} | params
    async with client.get("/v1/sms/send", params=query) as response:
        return response.status, await response.json()


async def get_json(client: Client, path: str) -> Any:
    async with client.get(path) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def eventually(check: Callable[[], bool], within: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --- send: where parameters and the key come from -------------------------------------------------------


async def test_get_send_with_key_in_query_is_accepted_and_recorded(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    status, body = await send(client, numbers=f"{NUMBER},{OTHER}")
    assert (status, body) == (200, {"statusID": 0, "smsID": 100_000, "message": "Success"})
    [record] = (await get_json(client, "/_sandbox/sends"))["sends"]
    assert record["sms_id"] == 100_000
    assert record["numbers"] == [NUMBER, OTHER]
    assert (record["method"], record["outcome"]) == ("GET", "ok")
    assert (record["brand_id"], record["text"]) == (1, "hello")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert (await send(client))[1]["smsID"] == 100_001


async def test_post_urlencoded_form_with_key_in_body(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    form = {"key": KEY, "brandID": "2", "numbers": NUMBER, "text": "form", "otp": "true", "stopList": "false"}
    async with client.post("/v1/sms/send", data=form) as response:
        assert (await response.json())["statusID"] == 0
    [record] = (await get_json(client, "/_sandbox/sends"))["sends"]
    assert (record["method"], record["brand_id"]) == ("POST", 2)
    assert (record["otp"], record["stop_list"]) == (True, False)


async def test_post_multipart_form_with_key_in_query(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    form = aiohttp.FormData({"brandID": "1", "numbers": NUMBER, "text": "multi"})
    form.add_field("file", b"ignored", filename="x.bin")
    async with client.post("/v1/sms/send", params={"key": KEY}, data=form) as response:
        assert (await response.json())["statusID"] == 0
    [record] = (await get_json(client, "/_sandbox/sends"))["sends"]
    assert record["text"] == "multi"


async def test_post_json_with_key_header_and_number_list(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    payload = {"brandID": 1, "numbers": [int(NUMBER), OTHER], "text": "json", "otp": True, "stopList": False}
    async with client.post("/v1/sms/send", json=payload, headers={"key": KEY}) as response:
        assert (await response.json())["statusID"] == 0
    [record] = (await get_json(client, "/_sandbox/sends"))["sends"]
    assert record["numbers"] == [NUMBER, OTHER]
    assert (record["otp"], record["stop_list"]) == (True, False)


async def test_post_json_with_key_in_body_and_defaults_for_flags(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    payload = {"key": KEY, "brandID": "1", "numbers": f"{NUMBER},{OTHER}", "text": "json"}
    async with client.post("/v1/sms/send", json=payload) as response:
        assert (await response.json())["statusID"] == 0
    [record] = (await get_json(client, "/_sandbox/sends"))["sends"]
    assert (record["numbers"], record["otp"], record["stop_list"]) == ([NUMBER, OTHER], False, True)


@pytest.mark.parametrize("key", [None, "", "wrong"])
async def test_bad_or_missing_key_is_refused_with_401(make_sandbox: MakeSandbox, key: str | None) -> None:
    client = await make_sandbox()
    params = {"brandID": "1", "numbers": NUMBER, "text": "x"} | ({} if key is None else {"key": key})
    async with client.get("/v1/sms/send", params=params) as response:
        assert response.status == 401
        assert await response.json() == {"statusID": 99, "message": "Invalid API key"}
    assert (await get_json(client, "/_sandbox/counts"))["calls"] == 0


# --- send: refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "status_id"),
    [
        ({"brandID": ""}, 10),
        ({"brandID": "9"}, 10),
        ({"brandID": "abc"}, 10),
        ({"numbers": ""}, 20),
        ({"numbers": " , "}, 20),
        ({"text": ""}, 30),
        ({"text": "   "}, 30),
        ({"numbers": "12345,+995511194242,995411194242"}, 50),
        ({"sendTime": "tomorrow"}, 99),
        ({"sendTime": "2020-01-01 10:00"}, 99),
        ({"brandID": "9", "numbers": "", "text": ""}, 10),  # the first failing check wins
        ({"numbers": "", "text": ""}, 20),
        ({"text": "", "numbers": "123"}, 30),
        ({"numbers": "123", "sendTime": "bad"}, 50),
    ],
)
async def test_refusals_answer_their_status_id_and_charge_nothing(
    make_sandbox: MakeSandbox, params: dict[str, str], status_id: int
) -> None:
    client = await make_sandbox()
    status, body = await send(client, **params)
    assert status == 200
    assert body["statusID"] == status_id
    assert body["message"]
    assert (await get_json(client, "/_sandbox/sends"))["sends"] == []
    assert (await get_json(client, "/v1/sms/balance?key=" + KEY))["sms"] == "1000000"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"'])
async def test_malformed_json_body_is_status_90(make_sandbox: MakeSandbox, body: bytes) -> None:
    client = await make_sandbox()
    headers = {"key": KEY, "Content-Type": "application/json"}
    async with client.post("/v1/sms/send", data=body, headers=headers) as response:
        assert (response.status, (await response.json())["statusID"]) == (200, 90)


async def test_malformed_json_with_bad_key_is_401_first(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    headers = {"key": "wrong", "Content-Type": "application/json"}
    async with client.post("/v1/sms/send", data=b"{", headers=headers) as response:
        assert response.status == 401


async def test_json_refusals_for_missing_fields(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    cases = [
        ({"numbers": [NUMBER], "text": "x"}, 10),
        ({"brandID": True, "numbers": [NUMBER], "text": "x"}, 10),
        ({"brandID": 1, "text": "x"}, 20),
        ({"brandID": 1, "numbers": [], "text": "x"}, 20),
        ({"brandID": 1, "numbers": [NUMBER]}, 30),
        ({"brandID": 1, "numbers": [NUMBER], "text": 5}, 30),
        ({"brandID": 1, "numbers": [None, 5.5], "text": "x"}, 50),
    ]
    for payload, status_id in cases:
        async with client.post("/v1/sms/send", json=payload, headers={"key": KEY}) as response:
            assert (await response.json())["statusID"] == status_id, payload


async def test_invalid_numbers_are_dropped_listed_and_not_charged(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    _, body = await send(client, numbers=f"{NUMBER},12345,995411194242,{OTHER}")
    assert body["statusID"] == 0
    [record] = (await get_json(client, "/_sandbox/sends"))["sends"]
    assert record["numbers"] == [NUMBER, OTHER]
    assert record["rejected_numbers"] == ["12345", "995411194242"]
    assert (await get_json(client, "/v1/sms/balance?key=" + KEY))["sms"] == str(1_000_000 - 2)


@pytest.mark.parametrize(
    ("text", "segments"),
    [("a" * 160, 1), ("a" * 161, 2), ("ა" * 70, 1), ("ა" * 71, 2), ("€" * 80, 1), ("€" * 81, 2)],
)
async def test_balance_lowers_by_numbers_times_segments(
    make_sandbox: MakeSandbox, text: str, segments: int
) -> None:
    client = await make_sandbox(balance="100")
    assert (await send(client, numbers=f"{NUMBER},{OTHER}", text=text))[1]["statusID"] == 0
    assert (await get_json(client, "/v1/sms/balance?key=" + KEY))["sms"] == str(100 - 2 * segments)


async def test_exhausted_balance_is_status_40(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(balance="3")
    assert (await send(client, numbers=f"{NUMBER},{OTHER}", text="a" * 161))[1]["statusID"] == 40
    assert (await send(client, text="a" * 161))[1]["statusID"] == 0
    assert (await send(client, text="a" * 161))[1]["statusID"] == 40
    assert (await get_json(client, "/v1/sms/balance?key=" + KEY))["sms"] == "1"


# --- report, balance, brand names ---------------------------------------------------------------------


async def test_report_shows_pending_then_the_latest_status(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(callback_delay="0.3", outcomes="failed=1")
    sms_id = (await send(client, numbers=f"{NUMBER},{OTHER}"))[1]["smsID"]
    report = await get_json(client, f"/v1/sms/report/{sms_id}?key={KEY}")
    assert report == {
        "statusID": 0,
        "result": [{"number": NUMBER, "statusID": "3"}, {"number": OTHER, "statusID": "3"}],
    }

    async def statuses() -> list[str]:
        report = await get_json(client, f"/v1/sms/report/{sms_id}?key={KEY}")
        return [r["statusID"] for r in report["result"]]

    for _ in range(100):
        if await statuses() == ["2", "2"]:
            break
        await asyncio.sleep(0.02)
    assert await statuses() == ["2", "2"]


async def test_report_of_unknown_sms_id_and_without_key(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    not_found = {"statusID": 99, "message": "SMS not found"}
    assert await get_json(client, f"/v1/sms/report/424242?key={KEY}") == not_found
    assert await get_json(client, f"/v1/sms/report/abc?key={KEY}") == not_found
    async with client.get("/v1/sms/report/100000") as response:
        assert (response.status, (await response.json())["statusID"]) == (401, 99)


async def test_balance_shape_and_key_header(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(balance="12345")
    async with client.get("/v1/sms/balance", headers={"key": KEY}) as response:
        assert await response.json() == {"statusID": 0, "sms": "12345"}
    async with client.get("/v1/sms/balance", params={"key": "nope"}) as response:
        assert response.status == 401


async def test_brand_names_shape(make_sandbox: MakeSandbox) -> None:
    """uBill's shape as public clients read it: the list in `data` and `brands`, ids and approval as strings,
    a creation time in uBill's local format; a brand pending approval is listed with "2" and cannot send."""
    client = await make_sandbox(brands="1:SMSGW,7:Shop,9:Pending", unapproved_brands="9")
    body = await get_json(client, f"/v1/sms/brandNames?key={KEY}")
    assert set(body) == {"statusID", "data", "brands"}
    assert body["statusID"] == 0
    assert body["data"] == body["brands"]
    created = {b.pop("createdAt") for b in body["data"]}
    assert body["data"] == [
        {"id": "1", "name": "SMSGW", "authorized": "1"},
        {"id": "7", "name": "Shop", "authorized": "1"},
        {"id": "9", "name": "Pending", "authorized": "2"},
    ]
    assert len(created) == 1
    stamp = datetime.strptime(created.pop(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=TBILISI)
    assert abs((stamp - datetime.now(UTC)).total_seconds()) < 120
    again = await get_json(client, f"/v1/sms/brandNames?key={KEY}")
    assert [b["createdAt"] for b in again["data"]] == [stamp.strftime("%Y-%m-%d %H:%M:%S")] * 3
    assert (await send(client, brandID="7"))[1]["statusID"] == 0
    assert (await send(client, brandID="2"))[1]["statusID"] == 10
    assert (await send(client, brandID="9"))[1]["statusID"] == 10
    async with client.get("/v1/sms/brandNames") as response:
        assert response.status == 401


# --- callbacks -----------------------------------------------------------------------------------------


async def test_callbacks_carry_sequence_key_and_tbilisi_date(
    make_sandbox: MakeSandbox, receiver: Receiver
) -> None:
    client = await make_sandbox(callback_url=receiver.url, callback_key="cb-secret", pending_first="true")
    before = datetime.now(UTC).replace(microsecond=0)
    sms_id = (await send(client, numbers=f"{NUMBER},{OTHER}"))[1]["smsID"]
    await eventually(lambda: len(receiver.calls) == 6)
    assert receiver.statuses(NUMBER) == ["0", "3", "1"]
    assert receiver.statuses(OTHER) == ["0", "3", "1"]
    for call in receiver.calls:
        assert call["key"] == "cb-secret"
        assert call["smsID"] == str(sms_id)
        moment = datetime.strptime(call["date"], DATE_FORMAT).replace(tzinfo=TBILISI)
        assert before <= moment <= datetime.now(UTC)
    log = (await get_json(client, "/_sandbox/callbacks"))["callbacks"]
    assert len(log) == 6
    assert {(e["sms_id"], e["http_status"], e["attempt"]) for e in log} == {(sms_id, 200, 1)}
    assert [e["status_id"] for e in log if e["number"] == NUMBER] == [0, 3, 1]


async def test_sent_first_can_be_turned_off(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    client = await make_sandbox(callback_url=receiver.url, sent_first="false")
    await send(client)
    await eventually(lambda: len(receiver.calls) == 1)
    await asyncio.sleep(0.05)
    assert receiver.statuses() == ["1"]


@pytest.mark.parametrize(("outcome", "status_id"), [("delivered", "1"), ("failed", "2"), ("error", "4")])
async def test_outcome_decides_the_final_status(
    make_sandbox: MakeSandbox, receiver: Receiver, outcome: str, status_id: str
) -> None:
    client = await make_sandbox(callback_url=receiver.url, outcomes=f"{outcome}=1")
    await send(client)
    await eventually(lambda: len(receiver.calls) == 2)
    assert receiver.statuses() == ["0", status_id]


async def test_outcome_mix_follows_the_weights(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    client = await make_sandbox(
        callback_url=receiver.url, outcomes="delivered=1,failed=1", sent_first="false"
    )
    numbers = [f"9955{i:08d}" for i in range(200)]
    await send(client, numbers=",".join(numbers))
    await eventually(lambda: len(receiver.calls) == 200)
    finals = [c["statusID"] for c in receiver.calls]
    assert set(finals) == {"1", "2"}
    assert 60 < finals.count("1") < 140


async def test_duplicates_send_each_callback_twice(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    client = await make_sandbox(callback_url=receiver.url, duplicate_rate="1")
    await send(client)
    await eventually(lambda: len(receiver.calls) == 4)
    assert receiver.statuses() == ["0", "0", "1", "1"]


async def test_reorder_sends_delivered_before_sent(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    client = await make_sandbox(callback_url=receiver.url, reorder_rate="1", pending_first="true")
    sms_id = (await send(client))[1]["smsID"]
    await eventually(lambda: len(receiver.calls) == 3)
    assert receiver.statuses() == ["1", "3", "0"]
    report = await get_json(client, f"/v1/sms/report/{sms_id}?key={KEY}")
    assert report["result"] == [{"number": NUMBER, "statusID": "1"}]  # the report keeps the furthest status


async def test_non_2xx_callback_is_retried(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    receiver.failures = 2
    client = await make_sandbox(callback_url=receiver.url, callback_retry_delay="0.05", sent_first="false")
    await send(client)
    await eventually(lambda: len(receiver.calls) == 3)
    assert len({c["date"] for c in receiver.calls}) == 1  # a retry repeats the same callback
    log = (await get_json(client, "/_sandbox/callbacks"))["callbacks"]
    assert [(e["attempt"], e["http_status"]) for e in log] == [(1, 503), (2, 503), (3, 200)]


async def test_callback_retries_stop_after_three(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    receiver.failures = 99
    receiver.fail_status = 404
    client = await make_sandbox(callback_url=receiver.url, callback_retry_delay="0.02", sent_first="false")
    await send(client)
    await eventually(lambda: len(receiver.calls) == 4)
    await asyncio.sleep(0.15)
    assert len(receiver.calls) == 4
    log = (await get_json(client, "/_sandbox/callbacks"))["callbacks"]
    assert [e["attempt"] for e in log] == [1, 2, 3, 4]


async def test_unreachable_callback_url_is_retried_and_logged(make_sandbox: MakeSandbox) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = await make_sandbox(
        callback_url=f"http://127.0.0.1:{port}/cb", callback_retry_delay="0.02", sent_first="false"
    )
    await send(client)

    async def attempts() -> list[dict[str, Any]]:
        return list((await get_json(client, "/_sandbox/callbacks"))["callbacks"])

    for _ in range(100):
        if len(await attempts()) == 4:
            break
        await asyncio.sleep(0.02)
    log = await attempts()
    assert [e["attempt"] for e in log] == [1, 2, 3, 4]
    assert all(e["error"] == "ClientConnectorError" and "http_status" not in e for e in log)


async def test_lost_callbacks_never_come_but_the_report_advances(
    make_sandbox: MakeSandbox, receiver: Receiver
) -> None:
    client = await make_sandbox(callback_url=receiver.url, lost_rate="1")
    sms_id = (await send(client))[1]["smsID"]
    await asyncio.sleep(0.15)
    assert receiver.calls == []
    report = await get_json(client, f"/v1/sms/report/{sms_id}?key={KEY}")
    assert report["result"] == [{"number": NUMBER, "statusID": "1"}]


def _clock_a_second_before_a_minute() -> tuple[Clock, datetime]:
    """A clock one second before a whole minute, so a sendTime (whole minutes) is a second away."""
    real = datetime.now(UTC)
    minute = (real + timedelta(minutes=2)).replace(second=0, microsecond=0)
    offset = minute - timedelta(seconds=1) - real
    return (lambda: datetime.now(UTC) + offset), minute


async def test_send_time_delays_callbacks(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    clock, minute = _clock_a_second_before_a_minute()
    client = await make_sandbox(clock=clock, callback_url=receiver.url, sent_first="false")
    send_time = format_local(minute, SEND_TIME_FORMAT)
    _, body = await send(client, sendTime=send_time)
    assert body["statusID"] == 0
    await asyncio.sleep(0.6)
    assert receiver.calls == []
    report = await get_json(client, f"/v1/sms/report/{body['smsID']}?key={KEY}")
    assert report["result"][0]["statusID"] == "3"
    await eventually(lambda: len(receiver.calls) == 1)
    date = datetime.strptime(receiver.calls[0]["date"], DATE_FORMAT).replace(tzinfo=TBILISI)
    assert date >= minute
    [record] = (await get_json(client, "/_sandbox/sends"))["sends"]
    assert record["send_time"] == send_time


async def test_send_time_in_the_current_minute_is_refused(make_sandbox: MakeSandbox) -> None:
    clock, minute = _clock_a_second_before_a_minute()
    client = await make_sandbox(clock=clock)
    past = format_local(minute - timedelta(minutes=1), SEND_TIME_FORMAT)
    assert (await send(client, sendTime=past))[1]["statusID"] == 99


async def test_no_callback_url_means_no_callbacks_but_reports_advance(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    sms_id = (await send(client))[1]["smsID"]

    async def status() -> str:
        return str((await get_json(client, f"/v1/sms/report/{sms_id}?key={KEY}"))["result"][0]["statusID"])

    for _ in range(100):
        if await status() == "1":
            break
        await asyncio.sleep(0.01)
    assert await status() == "1"
    assert (await get_json(client, "/_sandbox/callbacks"))["callbacks"] == []


# --- fault knobs ---------------------------------------------------------------------------------------


async def test_stall_holds_the_call_until_the_client_gives_up(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(stall_rate="1")
    with pytest.raises(asyncio.TimeoutError):
        await client.get(
            "/v1/sms/send",
            params={"key": KEY, "brandID": "1", "numbers": NUMBER, "text": "x"},
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    assert (await get_json(client, "/_sandbox/counts")) == {"calls": 0, "numbers": {}}
    assert (await get_json(client, f"/v1/sms/balance?key={KEY}"))["sms"] == "1000000"


async def test_error_rate_answers_5xx_without_json_and_accepts_nothing(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(error_rate="1")
    seen = set()
    for _ in range(12):
        async with client.get(
            "/v1/sms/send", params={"key": KEY, "brandID": "1", "numbers": NUMBER, "text": "x"}
        ) as response:
            seen.add(response.status)
            with pytest.raises(json.JSONDecodeError):
                json.loads(await response.text())
    assert seen <= {500, 502, 503}
    assert len(seen) > 1
    assert (await get_json(client, "/_sandbox/sends"))["sends"] == []
    assert (await get_json(client, f"/v1/sms/balance?key={KEY}"))["sms"] == "1000000"


async def test_5xx_answers_without_waiting_for_latency(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(error_rate="1", latency="0.5")
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await send_raw(client))[0] >= 500
    assert loop.time() - start < 0.4


async def test_error_rate_comes_before_the_key_check(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(error_rate="1")
    async with client.get("/v1/sms/send", params={"key": "wrong"}) as response:
        assert response.status >= 500


async def test_accept_error_answers_500_but_accepts(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    client = await make_sandbox(accept_error_rate="1", callback_url=receiver.url)
    status, _ = await send_raw(client)
    assert status == 500
    [record] = (await get_json(client, "/_sandbox/sends"))["sends"]
    assert record["outcome"] == "accept_error"
    assert (await get_json(client, f"/v1/sms/balance?key={KEY}"))["sms"] == "999999"
    await eventually(lambda: len(receiver.calls) == 2)


async def test_accept_error_spares_refused_calls(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(accept_error_rate="1", drop_rate="0")
    status, body = await send(client, brandID="9")
    assert (status, body["statusID"]) == (200, 10)


async def send_raw(client: Client) -> tuple[int, bytes]:
    params = {"key": KEY, "brandID": "1", "numbers": NUMBER, "text": "x"}
    async with client.get("/v1/sms/send", params=params) as response:
        return response.status, await response.read()


async def test_drop_cuts_the_connection_after_accepting(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(drop_rate="1")
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
        await send_raw(client)
    [record] = (await get_json(client, "/_sandbox/sends"))["sends"]
    assert record["outcome"] == "drop"
    assert (await get_json(client, "/_sandbox/counts")) == {"calls": 1, "numbers": {NUMBER: 1}}


async def test_latency_delays_every_uBill_call(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(latency="0.2")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await get_json(client, f"/v1/sms/balance?key={KEY}")
    assert loop.time() - start >= 0.2
    start = loop.time()
    await send(client)
    assert loop.time() - start >= 0.2
    start = loop.time()
    await get_json(client, "/_sandbox/counts")
    assert loop.time() - start < 0.2


async def test_fault_rates_are_shares_of_calls(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(error_rate="0.5", accept_error_rate="0.25")
    statuses = [(await send_raw(client))[0] for _ in range(200)]
    ok = statuses.count(200)
    accept_errors = len((await get_json(client, "/_sandbox/sends"))["sends"]) - ok
    assert 60 < 200 - ok - accept_errors < 140
    assert 25 < accept_errors < 75


# --- control routes ------------------------------------------------------------------------------------


async def test_patch_config_changes_knobs_at_run_time(make_sandbox: MakeSandbox, receiver: Receiver) -> None:
    client = await make_sandbox()
    patch = {
        "callback_url": receiver.url,
        "callback_key": "new-key",
        "outcomes": {"error": 1},
        "sent_first": False,
        "balance": 50,
        "latency": 0,
    }
    async with client.patch("/_sandbox/config", json=patch) as response:
        assert response.status == 200
        view = await response.json()
    assert (view["callback_key_set"], view["balance"], view["outcomes"]) == (True, 50, {"error": 1.0})
    assert "new-key" not in json.dumps(view)
    await send(client)
    await eventually(lambda: len(receiver.calls) == 1)
    assert (receiver.calls[0]["key"], receiver.calls[0]["statusID"]) == ("new-key", "4")
    assert (await get_json(client, "/_sandbox/config"))["balance"] == 49


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"latency": -1}, "latency"),
        ({"error_rate": 2}, "error_rate"),
        ({"error_rate": "x"}, "error_rate"),
        ({"sent_first": "maybe"}, "sent_first"),
        ({"outcomes": {"lost": 1}}, "outcomes"),
        ({"outcomes": "delivered=0"}, "outcomes"),
        ({"callback_url": "ftp://x"}, "callback_url"),
        ({"port": 1}, "port"),
        ({"api_key": "x"}, "api_key"),
        ({"nonsense": 1}, "nonsense"),
        ({"stall_rate": 0.6, "drop_rate": 0.6}, "stall_rate"),
    ],
)
async def test_patch_config_rejects_bad_values(
    make_sandbox: MakeSandbox, patch: dict[str, Any], field: str
) -> None:
    client = await make_sandbox()
    before = await get_json(client, "/_sandbox/config")
    async with client.patch("/_sandbox/config", json=patch) as response:
        assert response.status == 400
        assert field in (await response.json())["error"]
    assert await get_json(client, "/_sandbox/config") == before


async def test_patch_config_needs_a_json_object(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    for body in (b"nope", b"[1]"):
        async with client.patch("/_sandbox/config", data=body) as response:
            assert response.status == 400


async def test_get_config_names_the_knobs_and_hides_keys(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(callback_key="very-secret", latency="0.0", drop_rate="0.1")
    view = await get_json(client, "/_sandbox/config")
    knobs = (
        "latency",
        "error_rate",
        "stall_rate",
        "accept_error_rate",
        "drop_rate",
        "callback_url",
        "callback_delay",
        "outcomes",
        "sent_first",
        "pending_first",
        "duplicate_rate",
        "reorder_rate",
        "balance",
        "callback_key_set",
    )
    assert set(knobs) <= set(view)
    assert (view["drop_rate"], view["callback_key_set"], view["outcomes"]) == (0.1, True, {"delivered": 1.0})
    text = json.dumps(view)
    assert "very-secret" not in text
    assert KEY not in text


async def test_counts_and_number_filter(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    await send(client, numbers=f"{NUMBER},{OTHER}")
    await send(client, numbers=NUMBER)
    await send(client, brandID="9")  # refused: not counted
    assert await get_json(client, "/_sandbox/counts") == {"calls": 2, "numbers": {NUMBER: 2, OTHER: 1}}
    only_other = (await get_json(client, f"/_sandbox/sends?number={OTHER}"))["sends"]
    assert [s["sms_id"] for s in only_other] == [100_000]


async def test_delete_sends_clears_sends_counts_and_callbacks(
    make_sandbox: MakeSandbox, receiver: Receiver
) -> None:
    client = await make_sandbox(callback_url=receiver.url)
    await send(client)
    await eventually(lambda: len(receiver.calls) == 2)
    await client.patch("/_sandbox/config", json={"callback_delay": 0.2})
    await send(client)
    async with client.delete("/_sandbox/sends") as response:
        assert response.status == 204
    assert (await get_json(client, "/_sandbox/sends"))["sends"] == []
    assert await get_json(client, "/_sandbox/counts") == {"calls": 0, "numbers": {}}
    assert (await get_json(client, "/_sandbox/callbacks"))["callbacks"] == []
    await asyncio.sleep(0.3)
    assert len(receiver.calls) == 2  # callbacks of cleared sends are dropped too
    assert (await send(client))[1]["smsID"] == 100_002  # smsIDs never repeat


async def test_healthz(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox()
    async with client.get("/healthz") as response:
        assert (response.status, await response.text()) == (200, "ok")


async def test_a_call_with_100k_numbers(make_sandbox: MakeSandbox) -> None:
    client = await make_sandbox(callback_delay="60")
    numbers = [f"9955{i:08d}" for i in range(100_000)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    body = io.BytesIO(json.dumps({"brandID": 1, "numbers": numbers, "text": "x"}).encode())
    headers = {"key": KEY, "Content-Type": "application/json"}
    async with client.post("/v1/sms/send", data=body, headers=headers) as response:
        assert (await response.json())["statusID"] == 0
    assert loop.time() - start < 3
    assert (await get_json(client, f"/v1/sms/balance?key={KEY}"))["sms"] == str(1_000_000 - 100_000)
    assert (await get_json(client, "/_sandbox/counts"))["calls"] == 1


# --- main() --------------------------------------------------------------------------------------------


async def _run_main(env: Mapping[str, str]) -> asyncio.subprocess.Process:
    code = "import os, smsgw.sandbox; smsgw.sandbox.main(os.environ)"
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_main_serves_until_sigterm() -> None:
    port = free_port()
    process = await _run_main({"SMSGW_SANDBOX_PORT": str(port), "SMSGW_SANDBOX_API_KEY": "main-key"})
    url = f"http://127.0.0.1:{port}/v1/sms/balance?key=main-key"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(url) as response:
                        assert await response.json() == {"statusID": 0, "sms": "1000000"}
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.02)
            else:
                pytest.fail("the sandbox did not start")
        process.send_signal(signal.SIGTERM)
        stdout, _ = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert b"main-key" not in stdout
    assert b"sandbox listening" in stdout


async def test_main_stops_on_a_bad_variable() -> None:
    process = await _run_main({"SMSGW_SANDBOX_LATENCY": "soon"})
    _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode != 0
    assert b"SMSGW_SANDBOX_LATENCY" in stderr
