"""The callback allowlist behind an Ingress: ``X-Forwarded-For`` believed only from ``SMSGW_TRUSTED_PROXIES``.

The gateway's real peer in these tests is 127.0.0.1, playing the Ingress controller; the header carries what
a controller appends (the address it saw) after whatever the caller itself put there.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from smsgw.errors import SettingsError
from smsgw.settings import Settings
from smsgw.store import keys
from tests.gateway.conftest import Answer, call, list_length
from tests.harness import CALLBACK_KEY, Stack

A = "995511194242"
UBILL = "203.0.113.0/24"  # uBill's callback addresses, as an operator would allow-list them


async def from_(
    stack: Stack, forwarded: str | None, sms_id: str = "100000", key: str = CALLBACK_KEY
) -> Answer:
    """uBill's callback (a delivered status) arriving with this X-Forwarded-For."""
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    query = {"key": key, "smsID": sms_id, "number": A, "statusID": "1", "date": "2030-01-01 16:00:00"}
    return await call(stack, "GET", "/callbacks/ubill", who=None, params=query, headers=headers)


@pytest.mark.parametrize(
    ("forwarded", "status"),
    [
        ("203.0.113.5", 200),  # uBill, as the controller saw it
        ("198.51.100.7", 403),  # someone else
        (
            "203.0.113.5, 198.51.100.7",
            403,
        ),  # a caller forging uBill's address; the controller appends the real
        ("203.0.113.5, 10.1.2.3", 200),  # uBill through two proxies (10/8 trusted too)
        ("198.51.100.7, 203.0.113.5, 10.1.2.3", 200),  # the right-most untrusted hop decides
        ("[2001:db8::1]:443, 203.0.113.9:5555", 200),  # ports and brackets are read
        ("203.0.113.5, not-an-address", 403),  # garbage where the closest hop should be is never allowed
        (None, 403),  # no header: the proxy itself is the caller, and it is not uBill
    ],
)
async def test_forwarded_address_decides_behind_a_trusted_proxy(
    redis_url: str, redis: Redis, forwarded: str | None, status: int
) -> None:
    env = {
        "SMSGW_CALLBACK_ALLOWED_IPS": UBILL,
        "SMSGW_TRUSTED_PROXIES": "127.0.0.1/32, 10.0.0.0/8",
    }
    async with Stack(redis_url, env=env, worker=False) as stack:
        answer = await from_(stack, forwarded)
        assert answer.status == status, answer.text
        assert await list_length(redis, keys.orphan("100000")) == (1 if status == 200 else 0)


async def test_forwarded_header_ignored_without_trusted_proxies(redis_url: str) -> None:
    """Without the setting a caller cannot talk its way past the allowlist with a header."""
    async with Stack(redis_url, env={"SMSGW_CALLBACK_ALLOWED_IPS": UBILL}, worker=False) as stack:
        assert (await from_(stack, "203.0.113.5")).status == 403


async def test_forwarded_header_ignored_from_an_untrusted_peer(redis_url: str) -> None:
    env = {"SMSGW_CALLBACK_ALLOWED_IPS": UBILL, "SMSGW_TRUSTED_PROXIES": "10.0.0.0/8"}
    async with Stack(redis_url, env=env, worker=False) as stack:
        assert (await from_(stack, "203.0.113.5")).status == 403


async def test_the_peer_still_counts_when_it_is_allowed_and_untrusted(redis_url: str) -> None:
    """Direct calls (no Ingress) keep working: an allowed peer that is no proxy is judged by itself."""
    env = {"SMSGW_CALLBACK_ALLOWED_IPS": "127.0.0.1/32", "SMSGW_TRUSTED_PROXIES": "10.0.0.0/8"}
    async with Stack(redis_url, env=env, worker=False) as stack:
        assert (await from_(stack, "198.51.100.7")).status == 200


async def test_logs_name_the_real_caller(redis_url: str, log_events: list[dict[str, Any]]) -> None:
    env = {"SMSGW_CALLBACK_ALLOWED_IPS": UBILL, "SMSGW_TRUSTED_PROXIES": "127.0.0.1/32"}
    async with Stack(redis_url, env=env, worker=False) as stack:
        assert (await from_(stack, "198.51.100.7")).status == 403
        assert (await from_(stack, "203.0.113.5", "100001")).status == 200
        assert (await from_(stack, "203.0.113.6", key="wrong")).status == 403
    forbidden = [e for e in log_events if e["event"] == "callback.forbidden_ip"]
    assert [(e["peer"], e["via"]) for e in forbidden] == [("198.51.100.7", "127.0.0.1")]
    bad_key = [e for e in log_events if e["event"] == "callback.bad_key"]
    assert [(e["peer"], e["via"]) for e in bad_key] == [("203.0.113.6", "127.0.0.1")]
    requests = [e for e in log_events if e["event"] == "request" and e["route"] == "/callbacks/ubill"]
    assert [(e["status"], e["remote"]) for e in requests] == [(403, "198.51.100.7"), (403, "203.0.113.6")]


def test_trusted_proxies_setting_is_checked_at_start() -> None:
    settings = Settings.from_env({"SMSGW_TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8,192.168.1.7"})
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "fd00::/8", "192.168.1.7/32"]
    assert Settings.from_env({}).trusted_proxies == ()
    with pytest.raises(SettingsError, match=r"^SMSGW_TRUSTED_PROXIES: "):
        Settings.from_env({"SMSGW_TRUSTED_PROXIES": "10.0.0.0/8, ingress"})
