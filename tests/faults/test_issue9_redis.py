"""Issue 9, breaks 1 and 2: Redis away longer than the job lease mid-call, and Redis answering errors.

Real processes: a ``redis-server`` of the test's own (stopped with SIGSTOP, or put out of memory, into MISCONF
or read-only by an admin connection), the sandbox over HTTP, the gateway on a real socket and ``smsgw worker``
as a real process whose log is read. What counts is what uBill (the sandbox) received.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from smsgw.devtools.redis import EmbeddedRedis
from tests.faults.proxy import RedisProxy
from tests.faults.support import (
    FAULT_SIGN,
    REDIS_ERROR_FAULTS,
    admin,
    callback,
    log_text,
    pause,
    probe_write,
    resume,
    within,
    worker,
)
from tests.harness import TOKENS, Stack, astop

PROGRESSED = {"submitted", "sent", "pending", "delivered"}
FAULT_WORD = {"oom": "OOM", "misconf": "MISCONF", "readonly": "READONLY"}


async def _status(stack: Stack, message_id: str) -> str:
    return str((await stack.get(message_id))["recipients"][0]["status"])


async def _reached(stack: Stack, number: str) -> bool:
    return number in await stack.sandbox_counts()


# --- Break 1 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("away", ["sigstop", "blackhole"])
async def test_redis_away_past_the_lease_mid_call_sends_the_otp_once(
    away: str, fault_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """Redis is away for longer than the 1 s job lease while the OTP's uBill call (6 s) is out: stopped
    (SIGSTOP: a stall), or unreachable from the worker (a proxy that black-holes its connections).

    Expected (issue 9.1): the unit's owner is alive, so the job is not taken again; the worker does not start
    a second run of a job id it still runs (arq's ``run_job`` raises ``KeyError`` then); the OTP reaches uBill
    once and ends delivered (no unit left ``queued`` with no job behind it).
    """
    number = "995591100001"
    env = {"SMSGW_JOB_LEASE": "1", "SMSGW_REDIS_TIMEOUT": "0.5", "SMSGW_UBILL_TIMEOUT": "15"}
    async with (
        RedisProxy(fault_redis.port) as proxy,
        Stack(fault_redis.url, env=env, sandbox={"latency": "6"}, worker=False) as stack,
    ):
        proc, log = worker(stack, tmp_path, SMSGW_REDIS_URL=proxy.url)
        try:
            created = await stack.send({"to": number, "text": "Your code is 4821", "priority": "otp"})
            await stack.wait_status(created["id"], "dispatching", timeout=20)
            pause(fault_redis) if away == "sigstop" else proxy.blackhole()
            # Longer than the lease, and short enough that the worker is back well before the call ends.
            await asyncio.sleep(2.5)
            resume(fault_redis) if away == "sigstop" else proxy.heal()
            await within(lambda: _final(stack, created["id"]), timeout=30)
            await asyncio.sleep(8)  # a second call (6 s at the sandbox) would be recorded by now
            final = await _status(stack, created["id"])
        finally:
            resume(fault_redis)
            await astop(proc)
        counts = await stack.sandbox_counts()
    text = log_text(log)
    assert counts.get(number, 0) == 1, (
        f"the OTP reached uBill {counts.get(number, 0)} times (expected once): the job was taken again "
        "while its worker was still in the call"
    )
    assert "KeyError" not in text, "the worker started a second run of a job id it was still running"
    assert final in PROGRESSED, f"the recipient ended {final!r}, not submitted-or-later"


async def _final(stack: Stack, message_id: str) -> bool:
    return await _status(stack, message_id) in PROGRESSED | {"failed", "rejected", "expired", "unknown"}


# --- Break 2: the gateway ------------------------------------------------------------------------------


async def _answer(stack: Stack, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    async with stack.http.request(method, stack.url + path, **kwargs) as response:
        body = await response.text()
        return {
            "status": response.status,
            "type": response.headers.get("Content-Type", ""),
            "retry_after": response.headers.get("Retry-After"),
            "body": body[:200],
        }


def _api_ok(answer: dict[str, Any], allowed: tuple[int, ...] = ()) -> bool:
    """The contract: 503 problem+json with Retry-After (or, for a read that can still be served, 200)."""
    if answer["status"] in allowed:
        return True
    return (
        answer["status"] == 503
        and answer["type"].startswith("application/problem+json")
        and str(answer["retry_after"] or "").isdigit()
    )


@pytest.mark.parametrize("fault", sorted(REDIS_ERROR_FAULTS))
async def test_redis_answering_errors_is_503_with_retry_after_never_500(
    fault: str, fault_redis: EmbeddedRedis
) -> None:
    """Redis refuses writes with -OOM, -MISCONF or -READONLY (it does not refuse connections).

    Expected (issue 9.2, contract "Send"): every /v1 endpoint answers 503 problem+json with ``Retry-After``,
    never 500; a GET may also be served (200). The facade answers 503 with ``Retry-After`` in uBill's shape.
    The uBill callback answers a 5xx other than 500 (uBill retries any non-2xx; a 500 is the gateway's own
    failure, logged with a traceback per request). Once Redis is relieved, sends are accepted again.
    """
    inject, relieve = REDIS_ERROR_FAULTS[fault]
    r = admin(fault_redis)
    async with Stack(fault_redis.url, worker=False) as stack:
        queued = await stack.send({"to": "+995591200001", "text": "Queued before the fault"})
        limited = await stack.send({"to": "+995591200002", "text": "Limited client"}, who="limited")
        await inject(r, fault_redis.data_dir)
        assert FAULT_SIGN[fault] in await probe_write(r), "the fault did not take"
        auth = stack.auth()
        answers = {
            "POST /v1/messages": await _answer(
                stack, "POST", "/v1/messages", json={"to": "+995591200003", "text": "x"}, headers=auth
            ),
            "POST /v1/messages with Idempotency-Key": await _answer(
                stack,
                "POST",
                "/v1/messages",
                json={"to": "+995591200004", "text": "x"},
                headers={**auth, "Idempotency-Key": f"fault-{fault}"},
            ),
            "GET /v1/messages/{id}": await _answer(
                stack, "GET", f"/v1/messages/{queued['id']}", headers=auth
            ),
            "DELETE /v1/messages/{id}": await _answer(
                stack, "DELETE", f"/v1/messages/{queued['id']}", headers=auth
            ),
            "GET /v1/sms/send (facade)": await _answer(
                stack,
                "GET",
                "/v1/sms/send",
                params={"key": TOKENS["auth"], "brandID": "1", "numbers": "995591200005", "text": "x"},
            ),
        }
        await asyncio.sleep(1.0)  # the rate-limited client (2/s) is within its rate
        answers["GET /v1/messages/{id} (client with a rate)"] = await _answer(
            stack, "GET", f"/v1/messages/{limited['id']}", headers=stack.auth("limited")
        )
        cb = await callback(stack, "991000001", "995591200001", 1)
        await relieve(r, fault_redis.data_dir)
        after = await _answer(
            stack, "POST", "/v1/messages", json={"to": "+995591200006", "text": "after"}, headers=auth
        )
    await r.aclose()
    broken = {
        name: f"{answer['status']} {answer['type']} Retry-After={answer['retry_after']}"
        for name, answer in answers.items()
        if not _api_ok(answer, (200,) if name.startswith("GET /v1/messages") else ())
        and not (name.endswith("(facade)") and answer["status"] == 503 and answer["retry_after"])
    }
    assert not broken, f"answers under -{FAULT_WORD[fault]} that break the contract: {broken}"
    assert 500 < cb < 600, f"the callback under -{FAULT_WORD[fault]} was answered {cb}"
    assert after["status"] == 202, f"no recovery after the fault was relieved: {after}"


# --- Break 2: the worker -------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", sorted(REDIS_ERROR_FAULTS))
async def test_an_acknowledged_otp_is_held_until_redis_records_it(
    fault: str, fault_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """Redis refuses writes while the OTP's uBill call is out; uBill accepts it; Redis is relieved later.

    Expected (issue 9.2): the worker holds uBill's answer until Redis records it, whatever Redis answers
    meanwhile; the number reaches uBill exactly once and ends submitted-or-later. uBill's delivery callbacks
    are off here: a callback adopting the unit must not be what saves it (it often is, today, by luck).
    """
    inject, relieve = REDIS_ERROR_FAULTS[fault]
    number = "995591300001"
    r = admin(fault_redis)
    env = {"SMSGW_UBILL_TIMEOUT": "10"}
    async with Stack(fault_redis.url, env=env, sandbox={"latency": "2"}, worker=False) as stack:
        await stack.sandbox_patch({"callback_url": None})
        proc, _log = worker(stack, tmp_path)
        try:
            created = await stack.send({"to": number, "text": "Your code is 7310", "priority": "otp"})
            await stack.wait_status(created["id"], "dispatching", timeout=20)
            await inject(r, fault_redis.data_dir)
            assert await within(lambda: _reached(stack, number), timeout=10), "uBill never got the OTP"
            await asyncio.sleep(3)  # the answer is back; Redis still refuses to record it
            await relieve(r, fault_redis.data_dir)
            await within(lambda: _final(stack, created["id"]), timeout=30)
            await asyncio.sleep(4)  # a resend (2 s at the sandbox) would be recorded by now
            final = await _status(stack, created["id"])
        finally:
            await relieve(r, fault_redis.data_dir)
            await astop(proc)
        counts = await stack.sandbox_counts()
    await r.aclose()
    assert counts.get(number, 0) == 1, (
        f"uBill got the OTP {counts.get(number, 0)} times after -{FAULT_WORD[fault]} during its call "
        "(expected once: the acknowledged answer was dropped and the re-run sent it again)"
    )
    assert final in PROGRESSED, f"the recipient ended {final!r}, not submitted-or-later"


async def test_redis_away_during_a_reconcile_is_an_outage_not_a_bug(own_redis: EmbeddedRedis) -> None:
    """Found in the Sentinel soak's error lines: a reconcile whose status writes met a Redis outage ended its
    job with an exception (``dispatch.failed``, a stack trace, "a bug"). It is an outage: the job ends with a
    warning, the unit's lease brings it back, and the report is read again once Redis answers."""
    from structlog.testing import capture_logs  # noqa: PLC0415

    from smsgw.store.scripts import Scripts  # noqa: PLC0415
    from tests.harness import eventually  # noqa: PLC0415

    async with RedisProxy(own_redis.port) as proxy:
        env = {"SMSGW_RECONCILE_AFTER": "1", "SMSGW_REDIS_TIMEOUT": "1"}
        async with Stack(proxy.url, env=env) as stack:
            await stack.sandbox_patch({"callback_url": None})  # no callbacks: only the report tells
            created = await stack.send({"to": "+995591300021", "text": "Receipt 9"})
            await stack.wait_status(created["id"], "submitted")
            sha = Scripts.load(stack.worker.store.redis).callback.sha if stack.worker else ""
            with capture_logs() as logs:
                proxy.delay_replies(3.0, when_request_contains=sha)  # the reconcile's status writes time out

                async def waited() -> bool:
                    return any(e["event"] == "dispatch.reconcile_waiting_for_redis" for e in logs)

                await eventually(waited, timeout=15)
                proxy.no_delay()
                done = await stack.wait_status(created["id"], "delivered", timeout=15)
            failed = [e for e in logs if e["event"] == "dispatch.failed"]
    assert not failed, failed
    assert done["recipients"][0]["status"] == "delivered"
