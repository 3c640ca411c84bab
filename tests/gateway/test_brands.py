"""uBill's brand names: read by the worker, listed by the facade, sends refused for brands uBill would refuse.

Everything runs for real: the sandbox serves ``brandNames`` as uBill does, the worker reads it into Redis, the
gateway copies it into memory. ``SMSGW_BRANDS_INTERVAL=1`` makes the gateway look every 0.25 s.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from smsgw.store import keys
from smsgw.store.brands import BrandReading
from smsgw.ubill import Brand
from smsgw.worker.main import WorkerProcess
from tests.gateway.conftest import Answer, assert_no_secrets, call, fields_of, problem
from tests.harness import TOKENS, UBILL_KEY, Stack, eventually
from tests.worker.test_delivery import worker_metric

A = "995511194242"
KEY = TOKENS["auth"]
FAST = {"SMSGW_BRANDS_INTERVAL": "1"}


async def facade(stack: Stack, method: str, path: str, **kwargs: Any) -> Answer:
    """A request as a uBill SDK makes it (no bearer token: the key goes where uBill's would)."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{stack.url}/v1{path}", **kwargs) as response,
    ):
        answer = Answer(response.status, response.headers, response.content_type, await response.text())
    assert_no_secrets(answer)
    assert answer.content_type == "application/json"
    return answer


async def brand_names(stack: Stack, who: str = "auth") -> dict[str, Any]:
    answer = await facade(stack, "GET", "/sms/brandNames", headers={"key": TOKENS[who]})
    assert answer.status == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def listed(stack: Stack) -> bool:
    return bool((await brand_names(stack))["statusID"] == 0)


async def gateway_metrics(stack: Stack) -> dict[str, float]:
    """``smsgw_brand_usable`` samples by brand, from the gateway's /metrics."""
    text = (await call(stack, "GET", "/metrics", who=None)).text
    found = re.finditer(r'^smsgw_brand_usable\{brand="(\d+)"\} (\S+)$', text, re.M)
    return {m[1]: float(m[2]) for m in found}


def send_body(brand_id: int) -> dict[str, Any]:
    return {"to": [A], "text": "Brand check", "brand_id": brand_id}


# --- the facade's brandNames ------------------------------------------------------------------------------


async def test_brand_names_in_ubills_shape_for_the_clients_brands(redis_url: str) -> None:
    sandbox = {"brands": "1:SMSGW,2:Shop,5:Other", "unapproved_brands": "2"}
    async with Stack(redis_url, env=FAST, sandbox=sandbox) as stack:
        await eventually(lambda: listed(stack))
        body = await brand_names(stack)
        assert set(body) == {"statusID", "data", "brands"}
        assert body["data"] == body["brands"]
        created = {b["id"]: b["createdAt"] for b in (await _ubill_listing(stack))["data"]}
        # Brand 5 exists at uBill but auth-service may not use it: not listed.
        assert body["data"] == [
            {"id": "1", "name": "SMSGW", "authorized": "1", "createdAt": created["1"]},
            {"id": "2", "name": "Shop", "authorized": "2", "createdAt": created["2"]},
        ]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", created["1"])
        assert [b["id"] for b in (await brand_names(stack, "shop"))["brands"]] == ["2"]
        # The key where uBill clients put it: query, header; a wrong one is uBill's 401.
        by_query = await facade(stack, "GET", "/sms/brandNames", params={"key": TOKENS["ops"]})
        assert by_query.status == 200 and [b["id"] for b in by_query.json()["data"]] == ["1"]
        for wrong in ({"params": {"key": "nope"}}, {"headers": {"key": "nope"}}, {}):
            refused = await facade(stack, "GET", "/sms/brandNames", **wrong)
            assert refused.status == 401
            assert refused.json() == {"statusID": 99, "message": "Invalid API key"}


async def _ubill_listing(stack: Stack) -> dict[str, Any]:
    """What uBill (the sandbox) itself lists, asked with uBill's key."""
    async with stack.http.get(f"{stack.sandbox_url}/v1/sms/brandNames", headers={"key": UBILL_KEY}) as r:
        body: dict[str, Any] = await r.json()
        return body


async def test_a_brand_ubill_does_not_know_is_left_out_and_refused(redis_url: str, redis: Redis) -> None:
    async with Stack(redis_url, env=FAST, sandbox={"brands": "1:SMSGW"}) as stack:
        await eventually(lambda: listed(stack))
        assert [b["id"] for b in (await brand_names(stack))["data"]] == ["1"]
        await eventually(lambda: _judged(stack, {"1": 1.0, "2": 0.0}))
        body = problem(await call(stack, "POST", "/v1/messages", json=send_body(2)), 422)
        assert fields_of(body) == {"brand_id": "brand 2 is unknown to uBill"}
        answer = await facade(
            stack,
            "POST",
            "/sms/send",
            json={"brandID": 2, "numbers": [A], "text": "hi"},
            headers={"key": KEY},
        )
        assert answer.json() == {"statusID": 10, "message": "Brand 2 is unknown to uBill"}
        # Brand 1 is approved: sent as before.
        created = await stack.send(send_body(1))
        await stack.wait_status(created["id"], "delivered")
        assert [s["brand_id"] for s in await stack.sandbox_sends()] == [1]
        assert [k async for k in redis.scan_iter(match=keys.message("*"))] == [keys.message(created["id"])]


async def _judged(stack: Stack, verdicts: dict[str, float]) -> bool:
    """The gateway's verdicts as its gauge shows them (waiting on it sends nothing)."""
    return await gateway_metrics(stack) == verdicts


async def _accepted_again(stack: Stack, brand_id: int) -> bool:
    answer = await call(stack, "POST", "/v1/messages", json=send_body(brand_id))
    return answer.status == 202


async def test_an_unapproved_brand_is_refused_until_ubill_approves_it(
    redis_url: str, log_events: list[dict[str, Any]]
) -> None:
    sandbox = {"unapproved_brands": "2"}
    async with Stack(redis_url, env=FAST, sandbox=sandbox) as stack:
        await eventually(lambda: _judged(stack, {"1": 1.0, "2": 0.0}))
        body = problem(await call(stack, "POST", "/v1/messages", json=send_body(2)), 422)
        assert fields_of(body) == {"brand_id": "brand 2 is not approved by uBill"}
        form = {"key": KEY, "brandID": "2", "numbers": A, "text": "hi"}
        answer = await facade(stack, "POST", "/sms/send", data=form)
        assert answer.json() == {"statusID": 10, "message": "Brand 2 is not approved by uBill"}
        assert await stack.sandbox_sends() == []  # nothing queued for uBill to reject
        warned = [e for e in log_events if e["event"] == "brand.unusable"]
        assert [(e["level"], e["brand_id"], e["reason"]) for e in warned] == [
            ("warning", 2, "brand 2 is not approved by uBill")
        ]
        assert warned[0]["clients"] == ["auth-service", "shop"]
        # Approved at uBill: the next reading lets sends through again, and says so.
        await stack.sandbox_patch({"unapproved_brands": []})
        await eventually(lambda: _accepted_again(stack, 2), timeout=10)
        assert await gateway_metrics(stack) == {"1": 1.0, "2": 1.0}
        assert [e["brand_id"] for e in log_events if e["event"] == "brand.usable"] == [2]


# --- failing open -----------------------------------------------------------------------------------------


async def test_without_a_reading_nothing_is_refused(redis_url: str) -> None:
    """A fresh install, no worker yet, or uBill refusing the reading: sends go through as before."""
    env = {**FAST, "SMSGW_UBILL_API_KEY": "not-the-sandbox-key"}  # every uBill call is refused (401)
    async with Stack(redis_url, env=env, sandbox={"brands": "1:SMSGW"}) as stack:
        assert stack.worker is not None

        async def tried() -> bool:
            return await worker_metric(stack, "smsgw_ubill_requests_total") >= 1

        await eventually(tried)
        assert (await call(stack, "POST", "/v1/messages", json=send_body(2))).status == 202
        body = await brand_names(stack)
        assert body == {
            "statusID": 99,
            "message": "Brand names not read from uBill yet",
            "data": [],
            "brands": [],
        }
        assert await gateway_metrics(stack) == {}  # no reading is no verdict, not "unusable"


async def test_a_stale_reading_is_ignored(redis_url: str, redis: Redis) -> None:
    async with Stack(redis_url, env=FAST, worker=False) as stack:
        old = BrandReading(int(time.time() * 1000) - 3_600_000, (Brand(1, "SMSGW", "1", ""),))
        await redis.set(keys.BRANDS, old.to_json())
        await eventually(lambda: _listed_ids(stack, ["1"]))
        assert (await call(stack, "POST", "/v1/messages", json=send_body(2))).status == 202
        assert await gateway_metrics(stack) == {}
        fresh = BrandReading(int(time.time() * 1000), old.brands)
        await redis.set(keys.BRANDS, fresh.to_json())
        await eventually(lambda: _judged(stack, {"1": 1.0, "2": 0.0}))
        assert (await call(stack, "POST", "/v1/messages", json=send_body(2))).status == 422


async def test_brand_names_read_at_once_when_memory_has_none(redis_url: str, redis: Redis) -> None:
    """A gateway started before the worker's first reading lists it as soon as it exists (its next look
    would be 15 s away with the default interval)."""
    async with Stack(redis_url, env={"SMSGW_BRANDS_INTERVAL": "300"}, worker=False) as stack:
        assert (await brand_names(stack))["statusID"] == 99
        reading = BrandReading(int(time.time() * 1000), (Brand(2, "Shop", "1", "2026-11-20 10:00:00"),))
        await redis.set(keys.BRANDS, reading.to_json())
        body = await brand_names(stack)
        assert body["statusID"] == 0
        expected = [{"id": "2", "name": "Shop", "authorized": "1", "createdAt": "2026-11-20 10:00:00"}]
        assert body["data"] == body["brands"] == expected


async def _listed_ids(stack: Stack, ids: list[str]) -> bool:
    return [b["id"] for b in (await brand_names(stack)).get("data", [])] == ids


async def test_an_idempotent_replay_still_answers_after_the_brand_is_refused(
    redis_url: str, redis: Redis
) -> None:
    """The key's record answers the original message, even though the same body would now be refused."""
    async with Stack(redis_url, env=FAST, worker=False) as stack:
        first = await call(
            stack, "POST", "/v1/messages", json=send_body(2), headers={"Idempotency-Key": "k-1"}
        )
        assert first.status == 202
        fresh = BrandReading(int(time.time() * 1000), (Brand(1, "SMSGW", "1", ""), Brand(2, "Shop", "2", "")))
        await redis.set(keys.BRANDS, fresh.to_json())
        await eventually(lambda: _judged(stack, {"1": 1.0, "2": 0.0}))
        again = await call(
            stack, "POST", "/v1/messages", json=send_body(2), headers={"Idempotency-Key": "k-1"}
        )
        assert again.status == 202
        assert again.json()["id"] == first.json()["id"]


# --- the worker's reading ----------------------------------------------------------------------------------


async def test_the_worker_reads_at_start_once_for_all_workers(redis_url: str, redis: Redis) -> None:
    env = {"SMSGW_BRANDS_INTERVAL": "300"}
    async with Stack(redis_url, env=env, sandbox={"unapproved_brands": "2"}) as stack:

        async def read() -> bool:
            return bool(await redis.exists(keys.BRANDS))

        await eventually(read)
        ttl = await redis.ttl(keys.BRANDS)
        assert 0 < ttl <= keys.BRANDS_TTL
        reading = BrandReading.from_json(await redis.get(keys.BRANDS) or "")
        assert [(b.id, b.name, b.approved) for b in reading.brands] == [
            (1, "SMSGW", True),
            (2, "Shop", False),
        ]
        assert reading.age_s() < 60
        second = WorkerProcess(stack.settings)
        task = asyncio.create_task(second.serve())
        try:
            await eventually(lambda: _beats(redis, 2))
            calls = await worker_metric(stack, "smsgw_ubill_requests_total")
            for family in second.metrics.registry.collect():
                calls += sum(s.value for s in family.samples if s.name == "smsgw_ubill_requests_total")
            assert calls == 1  # the second worker found the leader lock taken
        finally:
            second.stop()
            await task


async def _beats(redis: Redis, count: int) -> bool:
    return len([k async for k in redis.scan_iter(match=keys.worker("*"))]) >= count


# --- an unmodified public uBill client ----------------------------------------------------------------------


class UbillSdkError(Exception):
    pass


class PublicUbillClient:
    """What the public uBill client libraries send and read, reproduced request by request.

    No such library installs here: npm answers 404 for `ubill-sms-client`, `js-ubill` and `@ubill/sdk`, and
    PyPI has none. Both npm libraries are axios-based: every request carries the key in a `key` header (and on
    the balance and GET-send calls as a `key` query parameter too), any 2xx body is returned as it is, and a
    non-2xx answer becomes `uBill API Error (<statusID>): <message>` (hence the issue's `uBill API Error
    (undefined)` on a 404 problem document). `ubill-sms-client` reads brands from `data` and approval as
    `authorized === "1"`; `js-ubill`'s `getBrandName(id)` does `brands.find(b => b.id === id)`, id a string.
    """

    def __init__(self, http: aiohttp.ClientSession, base_url: str, api_key: str) -> None:
        self._http, self._base, self._key = http, base_url, api_key

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "key": self._key}
        async with self._http.request(method, self._base + path, headers=headers, **kwargs) as response:
            body = await response.json(content_type=None)
            if response.status >= 300:
                raise UbillSdkError(f"uBill API Error ({body.get('statusID')}): {body.get('message')}")
            result: dict[str, Any] = body
            return result

    async def get_brand_names(self) -> dict[str, Any]:
        return await self._call("GET", "/sms/brandNames")

    async def get_brand_name(self, brand_id: str) -> dict[str, Any] | None:
        brands = (await self.get_brand_names())["brands"]
        return next((b for b in brands if b["id"] == brand_id), None)

    async def send_sms(self, brand_id: int, numbers: list[int], text: str) -> dict[str, Any]:
        payload = {"brandID": brand_id, "numbers": numbers, "text": text, "stopList": False}
        return await self._call("POST", "/sms/send", data=json.dumps(payload))

    async def send_sms_get(self, brand_id: int, numbers: str, text: str) -> dict[str, Any]:
        params = {"key": self._key, "brandID": str(brand_id), "numbers": numbers, "text": text}
        return await self._call("GET", "/sms/send", params={**params, "stopList": "false"})

    async def get_delivery_report(self, sms_id: int) -> dict[str, Any]:
        return await self._call("GET", f"/sms/report/{sms_id}")

    async def get_balance(self) -> dict[str, Any]:
        return await self._call("GET", "/sms/balance", params={"key": self._key})


async def test_a_public_ubill_client_pointed_at_the_gateway(redis_url: str) -> None:
    env = {**FAST, "SMSGW_BALANCE_INTERVAL": "1"}
    sandbox = {"brands": "1:SMSGW,2:Shop", "unapproved_brands": "2"}
    async with Stack(redis_url, env=env, sandbox=sandbox) as stack:
        sdk = PublicUbillClient(stack.http, stack.url + "/v1", KEY)
        await eventually(lambda: _judged(stack, {"1": 1.0, "2": 0.0}))
        listing = await sdk.get_brand_names()
        assert listing["statusID"] == 0
        usable = [b["id"] for b in listing["data"] if b["authorized"] == "1"]
        assert usable == ["1"]
        assert (await sdk.get_brand_name("2") or {}).get("authorized") == "2"
        assert await sdk.get_brand_name("5") is None
        sent = await sdk.send_sms(int(usable[0]), [int(A)], "Hello from a uBill SDK")
        assert sent["statusID"] == 0 and isinstance(sent["smsID"], int)
        refused = await sdk.send_sms(2, [int(A)], "Pending brand")
        assert refused == {"statusID": 10, "message": "Brand 2 is not approved by uBill"}
        by_get = await sdk.send_sms_get(1, f"{A},995511194243", "Hello via GET")
        assert by_get["statusID"] == 0

        async def delivered() -> bool:
            report = await sdk.get_delivery_report(sent["smsID"])
            return bool(report["statusID"] == 0 and report["result"] == [{"number": A, "statusID": "1"}])

        await eventually(delivered)

        async def balance_known() -> bool:
            return bool((await sdk.get_balance())["statusID"] == 0)

        await eventually(balance_known)
        assert int((await sdk.get_balance())["sms"]) > 0
        with pytest.raises(UbillSdkError, match=r"^uBill API Error \(99\): Invalid API key$"):
            await PublicUbillClient(stack.http, stack.url + "/v1", "wrong-key").get_brand_names()
