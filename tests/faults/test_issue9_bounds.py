"""Issue 9, breaks 5, 6 and 8: Redis bounded by retention, capacity that can be granted, housekeeping.

Break 5: nothing without a TTL keeps a member per message once its recipients are final. Break 6: a
configuration under which a lane can never get a full batch is refused at start, and a unit waiting for
capacity expires at its validity. Break 8: orphaned callbacks and dead letters of expired messages are
cleaned by the worker without a ``/metrics`` scrape; a caller hanging up is not a Redis error.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from smsgw.devtools.redis import free_port
from smsgw.errors import SettingsError
from smsgw.settings import Settings
from smsgw.store import keys
from tests.faults.support import callback, log_text, sizes_without_ttl, within, worker
from tests.harness import TOKENS, Stack, answers_200, astop, base_env, eventually, spawn
from tests.worker.test_lanes import numbers

PROGRESSED = {"submitted", "sent", "pending", "delivered"}
CAPACITY_SETTINGS = ("SMSGW_UBILL_RATE_NUMBERS", "SMSGW_BATCH_SIZE", "SMSGW_OTP_RESERVE")


# --- Break 5 -------------------------------------------------------------------------------------------


async def _deliver(stack: Stack, batch: list[str]) -> None:
    """One message per number (one unit each), all until delivered."""
    ids: list[str] = []
    for i in range(0, len(batch), 20):
        sent = await asyncio.gather(*(stack.send({"to": n, "text": "Receipt"}) for n in batch[i : i + 20]))
        ids += [m["id"] for m in sent]
    pending = set(ids)

    async def delivered() -> bool:
        for message_id in list(pending):
            if (await stack.get(message_id))["recipients"][0]["status"] == "delivered":
                pending.discard(message_id)
        return not pending

    await eventually(delivered, timeout=60, every=0.2)


async def test_nothing_without_a_ttl_grows_with_the_number_of_delivered_messages(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """Expected (issue 9.5, contract "Resource bounds"): after 200 and after 400 delivered messages (every
    recipient final), no key without a TTL has grown by anything like one member per message (event
    streams excepted: they are trimmed by age, ``SMSGW_EVENTS_RETENTION``); no final unit keeps a timer."""
    async with Stack(redis_url, worker=False) as stack:
        proc, _log = worker(stack, tmp_path)
        try:
            await _deliver(stack, numbers(200, 92_100_000))
            first = await sizes_without_ttl(redis)
            await _deliver(stack, numbers(200, 92_200_000))
            second = await sizes_without_ttl(redis)
            # A unit keeps one lane timer (dispatch, lease, reconciliation) until its recipients are final.
            awaiting = await redis.zcard(keys.lane_queue("transactional"))
        finally:
            await astop(proc)
    grown = {
        key: f"{kind} {first.get(key, (kind, 0))[1]} -> {size}"
        for key, (kind, size) in second.items()
        if kind != "stream" and size - first.get(key, (kind, 0))[1] >= 100
    }
    assert not grown, f"keys without a TTL that grew with 200 more delivered messages: {grown}"
    assert awaiting == 0, f"{awaiting} units of final messages are still awaiting reconciliation"


# --- Break 6 -------------------------------------------------------------------------------------------


def test_settings_refuse_a_rate_under_which_a_full_batch_is_never_granted() -> None:
    """``SMSGW_UBILL_RATE_NUMBERS=100`` with the default batch of 100 and the default OTP reserve (20 %):
    a transactional unit of 100 numbers can never get 100 numbers in one second. Expected (issue 9.6):
    ``Settings.from_env`` refuses it with one line naming the setting."""
    env = base_env("redis://127.0.0.1:1/0", "http://127.0.0.1:1/v1", SMSGW_UBILL_RATE_NUMBERS="100")
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert any(name in str(refused.value) for name in CAPACITY_SETTINGS), str(refused.value)
    assert "\n" not in str(refused.value)


async def test_the_worker_refuses_to_start_when_a_full_batch_is_never_granted(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """The same configuration given to ``smsgw worker``: it must exit at start (non-zero) with one line that
    names the setting, instead of running with units that wait for ever."""
    log = tmp_path / "worker.log"
    env = base_env(redis_url, "http://127.0.0.1:1/v1", SMSGW_UBILL_RATE_NUMBERS="100")
    proc = spawn("worker", env, log)
    try:
        code = await asyncio.to_thread(proc.wait, 15)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        await astop(proc)
    lines = [line for line in log_text(log).splitlines() if line.strip()]
    assert code is not None and code != 0, (
        "the worker started with SMSGW_UBILL_RATE_NUMBERS=100 and batches of 100, where a transactional "
        "unit of 100 numbers can never be granted"
    )
    assert len(lines) == 1, f"expected one clear line, got: {lines}"
    assert any(name in lines[0] for name in CAPACITY_SETTINGS), lines[0]


async def test_a_unit_waiting_for_capacity_expires_at_its_validity(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """uBill allows 1 call/s; 15 OTPs wait ahead of a transactional message with ``validity`` 3 s (OTP goes
    first on the surplus). Expected (issue 9.6, README "Validity"): 3 s after its validity the message is
    ``expired`` (never sent), or, had it got capacity in time, handed to uBill: it does not wait on."""
    otp_numbers = numbers(15, 92_300_000)
    number = "995592400001"
    env = {"SMSGW_UBILL_RATE_CALLS": "1"}
    async with Stack(redis_url, env=env, worker=False) as stack:
        for n in otp_numbers:
            await stack.send({"to": n, "text": "Your code is 5521", "priority": "otp"})
        proc, _log = worker(stack, tmp_path)
        try:
            await within(lambda: _any_reached(stack, otp_numbers), timeout=15)
            created = await stack.send({"to": number, "text": "Your table is booked", "validity": 3})
            await asyncio.sleep(3 + 3)
            status = (await stack.get(created["id"]))["recipients"][0]["status"]
            counts = await stack.sandbox_counts()
        finally:
            await astop(proc)
    otp_sent = sum(1 for n in otp_numbers if n in counts)
    assert otp_sent < len(otp_numbers), "the OTP backlog was gone: the capacity was never held"
    if status == "expired":
        assert number not in counts, "expired, yet uBill got it"
    else:
        assert status in PROGRESSED and number in counts, (
            f"3 s after its validity the message is still {status!r}: it waits for capacity past expires_at"
        )


async def _any_reached(stack: Stack, batch: list[str]) -> bool:
    counts = await stack.sandbox_counts()
    return any(n in counts for n in batch)


# --- Break 8 -------------------------------------------------------------------------------------------


async def test_orphaned_callbacks_are_trimmed_without_a_metrics_scrape(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """Callbacks for smsIDs never recorded are kept ``SMSGW_ORPHAN_TTL`` (its minimum, 5 s, here). Expected
    (issue 9.8): with a worker running and nobody scraping ``/metrics``, the orphan index holds none of them
    shortly after the TTL."""
    env = {"SMSGW_ORPHAN_TTL": "5", "SMSGW_HOUSEKEEPING_INTERVAL": "1"}
    foreign = [str(600_000_000 + secrets.randbelow(99_999_999)) for _ in range(3)]
    async with Stack(redis_url, env=env, worker=False) as stack:
        proc, _log = worker(stack, tmp_path)
        try:
            for i, sms_id in enumerate(foreign):
                assert await callback(stack, sms_id, f"99559250000{i}", 1) == 200
            assert all([await redis.exists(keys.orphan(s)) for s in foreign]), "orphans were not kept"
            trimmed = await within(lambda: _none_indexed(redis, foreign), timeout=5 + 20, every=1)
            left = await redis.zcard(keys.ORPHANS)
        finally:
            await astop(proc)
    assert trimmed, f"{left} orphaned smsIDs are still indexed 20 s after their TTL, without a scrape"


async def _none_indexed(redis: Redis, sms_ids: list[str]) -> bool:
    return all([await redis.zscore(keys.ORPHANS, s) is None for s in sms_ids])


async def test_a_dead_letter_whose_message_expired_leaves_the_dead_letter_index(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """A unit dead-lettered (uBill answers 5xx, one attempt), then its message's retention runs out (its hash
    expires). Expected (issue 9.8): the dead letter leaves the index by the worker's housekeeping."""
    env = {"SMSGW_MAX_ATTEMPTS": "1", "SMSGW_HOUSEKEEPING_INTERVAL": "0.5"}
    async with Stack(redis_url, env=env, sandbox={"error_rate": "1.0"}, worker=False) as stack:
        proc, _log = worker(stack, tmp_path)
        try:
            created = await stack.send({"to": "995592600001", "text": "Dead letter"}, who="ops")
            await stack.wait_for(
                created["id"], lambda m: m["recipients"][0]["status"] == "failed", timeout=20, who="ops"
            )
            async with stack.http.get(
                f"{stack.url}/v1/admin/dead-letters", headers=stack.auth("ops")
            ) as response:
                listed = (await response.json())["dead_letters"]
            dead_id = next(d["id"] for d in listed if d["message_id"] == created["id"])
            await redis.pexpire(keys.message(created["id"]), 1)  # its retention ran out
            gone = await within(lambda: _not_dead(redis, dead_id), timeout=20, every=0.5)
        finally:
            await astop(proc)
    assert gone, "a dead letter of a message that no longer exists stays in the dead-letter index"


async def _not_dead(redis: Redis, dead_id: str) -> bool:
    return await redis.zscore(keys.DEAD, dead_id) is None


def _hang_up_mid_body(port: int) -> None:
    """A big POST whose caller resets the connection halfway through the body."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = (
            "POST /v1/messages HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: Bearer {TOKENS['auth']}\r\nContent-Type: application/json\r\n"
            "Content-Length: 900000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"to": [' + b'"+995591000000", ' * 10_000)
        time.sleep(0.3)  # the gateway is reading the body
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST


async def test_a_caller_hanging_up_mid_request_is_not_a_redis_error(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """Expected (issue 9.8): a client that disconnects mid-request is neither logged as ``redis.unavailable``
    nor counted in ``smsgw_redis_errors_total`` (that would page someone for nothing)."""
    port = free_port()
    log = tmp_path / "gateway.log"
    async with Stack(redis_url, worker=False) as stack:
        proc = spawn("gateway", {**stack.env, "SMSGW_HTTP_PORT": str(port)}, log)
        url = f"http://127.0.0.1:{port}"
        try:
            await eventually(lambda: answers_200(f"{url}/readyz"), timeout=20)
            for _ in range(3):
                await asyncio.to_thread(_hang_up_mid_body, port)
            await asyncio.sleep(1.0)
            async with stack.http.get(f"{url}/metrics") as response:
                metrics = await response.text()
        finally:
            await astop(proc)
    found = re.search(r"^smsgw_redis_errors_total (\S+)$", metrics, re.MULTILINE)
    counted = float(found.group(1)) if found else 0.0
    logged = log_text(log).count("redis.unavailable")
    assert counted == 0 and logged == 0, (
        f"3 callers hanging up were counted {counted:g} times in smsgw_redis_errors_total "
        f"and logged {logged} times as redis.unavailable"
    )
