"""The sandbox's 429 knob (``rate_limited_rate``): uBill throttling, over real sockets."""

from __future__ import annotations

import json
import random
from collections import Counter

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from smsgw.errors import ProviderUnavailable, SettingsError
from smsgw.sandbox import SandboxConfig, create_app
from smsgw.sandbox.faults import draw_fault
from smsgw.settings import Secret
from smsgw.ubill import UbillClient

KEY = "test-key"
PARAMS = {"key": KEY, "brandID": "1", "numbers": "995511194242", "text": "x"}


def config(**env: str) -> SandboxConfig:
    settings = {"api_key": KEY, "seed": "7"} | env
    return SandboxConfig.from_env({f"SMSGW_SANDBOX_{k.upper()}": v for k, v in settings.items()})


async def test_rate_limited_answers_429_with_retry_after_and_records_nothing(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(create_app(config(rate_limited_rate="1")))
    async with client.get("/v1/sms/send", params=PARAMS) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["statusID"] == 99
    async with client.get("/_sandbox/counts") as response:
        assert await response.json() == {"calls": 0, "numbers": {}}
    async with client.get("/v1/sms/balance", params={"key": KEY}) as response:
        assert (await response.json())["sms"] == "1000000"


async def test_rate_limited_is_changeable_at_run_time(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(config()))
    async with client.patch("/_sandbox/config", data=json.dumps({"rate_limited_rate": 1})) as response:
        assert response.status == 200
        assert (await response.json())["rate_limited_rate"] == 1.0
    async with client.get("/v1/sms/send", params=PARAMS) as response:
        assert response.status == 429
    async with client.patch("/_sandbox/config", data=json.dumps({"rate_limited_rate": 0})) as response:
        assert response.status == 200
    async with client.get("/v1/sms/send", params=PARAMS) as response:
        assert (response.status, (await response.json())["statusID"]) == (200, 0)


def test_rate_limited_shares_the_one_draw_with_the_other_faults() -> None:
    with pytest.raises(SettingsError, match="RATE_LIMITED_RATE"):
        config(rate_limited_rate="0.6", error_rate="0.6")
    rng = random.Random(3)
    drawn = Counter(draw_fault(config(rate_limited_rate="0.3", error_rate="0.2"), rng) for _ in range(4000))
    assert 1000 < drawn["rate_limited"] < 1400
    assert 600 < drawn["error"] < 1000


async def test_the_worker_reads_the_sandbox_429_as_retry_later(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(config(rate_limited_rate="1")))
    async with aiohttp.ClientSession() as session:
        base = str(client.make_url("/v1"))
        ubill = UbillClient(session, base, Secret(KEY), timeout=5, connect_timeout=1, max_url_length=8000)
        with pytest.raises(ProviderUnavailable) as caught:
            await ubill.send(["995511194242"], "x", 1, otp=False, stop_list=True)
    assert (caught.value.outcome, caught.value.retry_after) == ("rate_limited", 1.0)
