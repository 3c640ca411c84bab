"""Issue 9, breaks 3 and 4: answers that must be true, and callbacks that must not invent a delivery.

Break 3: a TCP proxy between the gateway and Redis holds the reply to the accept (only the request carrying a
marker word of the message's text) past ``SMSGW_REDIS_TIMEOUT``: Redis stored the message, the gateway's
deadline passed. Break 4: a callback for an smsID this gateway never sent arrives while a call to the same
number is out, and uBill then refuses the call or answers 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from smsgw.devtools.redis import EmbeddedRedis
from smsgw.gateway.app import create_app
from smsgw.store.scripts import source
from smsgw.store.verifications import keys as vkeys
from tests.faults.proxy import RedisProxy
from tests.faults.support import callback, within, worker
from tests.faults.ubill_gate import UbillGate
from tests.harness import TOKENS, Stack, astop, serve

PROGRESSED = {"submitted", "sent", "pending", "delivered"}
TIMEOUT = "0.5"  # SMSGW_REDIS_TIMEOUT of the gateway
LATE = 1.5  # seconds the proxy holds the accept's reply: well past the deadline


def _late_env() -> dict[str, str]:
    return {"SMSGW_REDIS_TIMEOUT": TIMEOUT}


async def _post(stack: Stack, body: dict[str, Any], key: str) -> dict[str, Any]:
    headers = {**stack.auth(), "Idempotency-Key": key}
    async with stack.http.post(f"{stack.url}/v1/messages", json=body, headers=headers) as response:
        data = await response.json(content_type=None)
        return {
            "status": response.status,
            "problem_type": data.get("type", "") if isinstance(data, dict) else "",
            "retry_after": response.headers.get("Retry-After"),
            "id": data.get("id") if isinstance(data, dict) else None,
        }


def _true_answer(answer: dict[str, Any]) -> bool:
    """The contract's rule: 202 (the gateway found out), or 503 ``…/outcome-unknown`` with Retry-After."""
    return answer["status"] == 202 or (
        answer["status"] == 503
        and str(answer["problem_type"]).endswith("/outcome-unknown")
        and str(answer["retry_after"] or "").isdigit()
    )


async def _sent_count(stack: Stack, number: str) -> int:
    return (await stack.sandbox_counts()).get(number, 0)


async def _all_reached(stack: Stack, numbers: list[str]) -> bool:
    counts = await stack.sandbox_counts()
    return all(n in counts for n in numbers)


# --- Break 3 -------------------------------------------------------------------------------------------


async def test_a_stored_message_whose_reply_came_late_is_not_answered_nothing_accepted(
    redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """Expected (issue 9.3, contract "Send"): 202, or 503 ``/outcome-unknown`` with Retry-After; the retry
    with the same Idempotency-Key answers the stored message, and uBill gets the number once."""
    number = "995591400001"
    marker = f"late{secrets.token_hex(4)}"
    body = {"to": number, "text": f"Your order has shipped ({marker})"}
    async with (
        RedisProxy(redis_server.port) as proxy,
        Stack(proxy.url, env=_late_env(), worker=False) as stack,
    ):
        proc, _log = worker(stack, tmp_path, SMSGW_REDIS_URL=redis_server.url)
        try:
            proxy.delay_replies(LATE, when_request_contains=marker)
            first = await _post(stack, body, f"key-{marker}")
            proxy.no_delay()
            assert proxy.delayed >= 1, "the proxy delayed nothing: the fault did not happen"
            await asyncio.sleep(LATE)
            retry = await _post(stack, body, f"key-{marker}")
            await within(lambda: _all_reached(stack, [number]), timeout=20)
            await asyncio.sleep(2)  # a second message would be sent by now
        finally:
            await astop(proc)
        sent = await _sent_count(stack, number)
    assert _true_answer(first), (
        f"a stored message was answered {first['status']} {first['problem_type']!r} "
        f"(not 202, nor /outcome-unknown); after the retry uBill got the number {sent} time(s)"
    )
    assert retry["status"] == 202, f"the retry with the same Idempotency-Key was answered {retry}"
    assert sent == 1, f"uBill got the number {sent} times (expected once)"


async def test_every_call_of_a_late_batch_is_answered_truly_and_retries_send_once(
    redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """Concurrent POSTs share one pipeline to Redis; its reply comes after the deadline. Every answer must be
    202 or ``/outcome-unknown`` (each call ran and stored its message); every retry with the same key sends
    nothing new: each number reaches uBill once."""
    marker = f"batch{secrets.token_hex(4)}"
    numbers = [f"99559150{i:04d}" for i in range(6)]
    bodies = [{"to": n, "text": f"Ticket confirmed ({marker})"} for n in numbers]
    keys = [f"key-{marker}-{i}" for i in range(len(numbers))]
    async with (
        RedisProxy(redis_server.port) as proxy,
        Stack(proxy.url, env=_late_env(), worker=False) as stack,
    ):
        proc, _log = worker(stack, tmp_path, SMSGW_REDIS_URL=redis_server.url)
        try:
            proxy.delay_replies(LATE, when_request_contains=marker)
            first = await asyncio.gather(*(_post(stack, b, k) for b, k in zip(bodies, keys, strict=True)))
            proxy.no_delay()
            assert proxy.delayed >= 1, "the proxy delayed nothing: the fault did not happen"
            await asyncio.sleep(LATE)
            retries = [
                await _post(stack, b, k)
                for b, k, a in zip(bodies, keys, first, strict=True)
                if a["status"] != 202
            ]
            await within(lambda: _all_reached(stack, numbers), timeout=20)
            await asyncio.sleep(2)
        finally:
            await astop(proc)
        counts = await stack.sandbox_counts()
    untrue = [f"{a['status']} {a['problem_type']}" for a in first if not _true_answer(a)]
    twice = {n: counts.get(n, 0) for n in numbers if counts.get(n, 0) != 1}
    assert not untrue, (
        f"{len(untrue)} of {len(numbers)} stored messages were answered as not accepted: {untrue}; "
        f"numbers uBill did not get exactly once after the retries: {twice}"
    )
    assert all(r["status"] == 202 for r in retries), f"retries with the same key: {retries}"
    assert not twice, f"numbers uBill did not get exactly once: {twice}"


async def test_a_facade_client_retrying_after_a_late_reply_does_not_send_twice(
    redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """The facade has no Idempotency-Key: an unmodified uBill client retries the same call after a 5xx.
    Expected (issue 9.3): at most one send of the number, whatever the gateway answered."""
    number = "995591600001"
    marker = f"facade{secrets.token_hex(4)}"
    params = {"key": TOKENS["auth"], "brandID": "1", "numbers": number, "text": f"Parcel ready ({marker})"}
    answers: list[tuple[int, Any]] = []
    async with (
        RedisProxy(redis_server.port) as proxy,
        Stack(proxy.url, env=_late_env(), worker=False) as stack,
    ):
        proc, _log = worker(stack, tmp_path, SMSGW_REDIS_URL=redis_server.url)
        try:
            proxy.delay_replies(LATE, when_request_contains=marker)
            for attempt in range(3):  # a uBill client: retry the same call until statusID 0
                async with stack.http.get(f"{stack.url}/v1/sms/send", params=params) as response:
                    answers.append((response.status, await response.json(content_type=None)))
                proxy.no_delay()
                if response.status == 200 and answers[-1][1].get("statusID") == 0:
                    break
                await asyncio.sleep(LATE if attempt == 0 else 1.0)
            assert proxy.delayed >= 1, "the proxy delayed nothing: the fault did not happen"
            await within(lambda: _all_reached(stack, [number]), timeout=20)
            await asyncio.sleep(2)
        finally:
            await astop(proc)
        sent = await _sent_count(stack, number)
    assert sent <= 1, f"uBill got the number {sent} times after a facade client's retry; answers: {answers}"


@pytest.mark.parametrize("elsewhere", [False, True], ids=["same-gateway", "another-gateway"])
async def test_a_facade_repeat_after_outcome_unknown_gets_the_original_smsid(
    redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path, elsewhere: bool
) -> None:
    """Every reply is held past the deadline: the send (stored by Redis) and its find-out go unanswered, so
    the facade answers "outcome unknown". Redis then answers sends again but still not find-outs, so the
    gateway that answered never learns the verdict. The uBill client repeats the call, to the same gateway
    or (through a balancer) to another process that never heard of the first: either way the repeat must
    get the original smsID, and uBill the number once."""
    number = "995591600002"
    marker = f"facade{secrets.token_hex(4)}"
    params = {"key": TOKENS["auth"], "brandID": "1", "numbers": number, "text": f"Parcel ready ({marker})"}
    findout = hashlib.sha1(source("findout").encode()).hexdigest()
    answers: list[tuple[int, Any]] = []
    async with (
        RedisProxy(redis_server.port) as proxy,
        Stack(proxy.url, env=_late_env(), worker=False) as stack,
    ):
        runner, other_url = await serve(
            create_app(stack.settings)
        )  # its own pool and memory: a process apart
        proc, _log = worker(stack, tmp_path, SMSGW_REDIS_URL=redis_server.url)
        try:
            for url in (stack.url, other_url):  # pooled connections, so the sends reach Redis
                warm = {**params, "numbers": "995591600003", "text": f"Warm {url}"}
                async with stack.http.get(f"{url}/v1/sms/send", params=warm) as response:
                    assert response.status == 200
            proxy.delay_replies(3.0)
            for attempt in range(4):
                url = other_url if elsewhere and attempt else stack.url
                async with stack.http.get(f"{url}/v1/sms/send", params=params) as response:
                    answers.append((response.status, await response.json(content_type=None)))
                if answers[-1][0] == 200:
                    break
                proxy.delay_replies(3.0, when_request_contains=findout)  # the first gateway never finds out
            await within(lambda: _all_reached(stack, [number]), timeout=20)
            await asyncio.sleep(2)
        finally:
            await astop(proc)
            await runner.cleanup()
        sent = await _sent_count(stack, number)
        stored = [k async for k in redis.scan_iter("smsgw:msg:*")]
    warmed = 2  # one call through each gateway
    assert answers[0][0] == 503 and "outcome unknown" in answers[0][1]["message"], f"no fault: {answers}"
    assert len(stored) == warmed + 1, f"a repeat stored the call again: {len(stored)} messages; {answers}"
    assert answers[-1][0] == 200 and answers[-1][1]["smsID"] == warmed + 1, f"not the original: {answers}"
    assert sent == 1, f"uBill got the number {sent} times"


async def test_a_facade_caller_that_gave_up_before_the_answer_gets_the_original_on_repeat(
    redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """The accept's reply is slow but within the gateway's deadline, so the gateway stores the call and
    answers statusID 0; the caller gave up before that answer (its own timeout) and repeats the call. The
    answer it never heard must not count as definite: the repeat gets the original smsID, uBill the number
    once."""
    number = "995591600005"
    marker = f"facade{secrets.token_hex(4)}"
    params = {"key": TOKENS["auth"], "brandID": "1", "numbers": number, "text": f"Parcel ready ({marker})"}
    async with (
        RedisProxy(redis_server.port) as proxy,
        Stack(proxy.url, env=_late_env(), worker=False) as stack,
    ):
        proc, _log = worker(stack, tmp_path, SMSGW_REDIS_URL=redis_server.url)
        try:
            proxy.delay_replies(0.3, when_request_contains=marker)  # well inside the 0.5 s deadline
            with contextlib.suppress(TimeoutError):
                timeout = aiohttp.ClientTimeout(total=0.1)
                async with stack.http.get(f"{stack.url}/v1/sms/send", params=params, timeout=timeout) as r:
                    await r.read()
                raise AssertionError("the caller heard the answer: the fault did not happen")
            await asyncio.sleep(0.6)  # the gateway has answered into the closed connection by now
            proxy.no_delay()
            async with stack.http.get(f"{stack.url}/v1/sms/send", params=params) as response:
                repeat = await response.json(content_type=None)
            await within(lambda: _all_reached(stack, [number]), timeout=20)
            await asyncio.sleep(2)
        finally:
            await astop(proc)
        sent = await _sent_count(stack, number)
        stored = [k async for k in redis.scan_iter("smsgw:msg:*")]
    assert repeat["statusID"] == 0, repeat
    assert len(stored) == 1, f"the repeat stored the call again: {len(stored)} messages; {repeat}"
    assert sent == 1, f"uBill got the number {sent} times"


async def test_a_keyed_repeat_whose_own_reply_is_lost_answers_the_original(
    redis: Redis, redis_server: EmbeddedRedis
) -> None:
    """The first POST is stored and answered 202. Its repeat with the same key stores nothing (Redis replays
    the original) and that reply is held past the deadline. "Nothing was accepted" would be false (the
    original is stored and goes out) and would invite a send under a new key: the gateway must find out that
    the repeat was a replay and answer the original, or say "outcome unknown"."""
    marker = f"again{secrets.token_hex(4)}"
    body = {"to": "995591400021", "text": f"Your code expires soon ({marker})"}
    async with (
        RedisProxy(redis_server.port) as proxy,
        Stack(proxy.url, env=_late_env(), worker=False) as stack,
    ):
        first = await _post(stack, body, f"key-{marker}")
        proxy.delay_replies(LATE, when_request_contains=marker)
        repeat = await _post(stack, body, f"key-{marker}")
        proxy.no_delay()
        assert proxy.delayed >= 1, "the proxy delayed nothing: the fault did not happen"
        stored = [k async for k in redis.scan_iter("smsgw:msg:*")]
    assert first["status"] == 202, first
    assert _true_answer(repeat), f"the repeat of a stored message was answered {repeat}"
    assert repeat["status"] != 202 or repeat["id"] == first["id"], (first, repeat)
    assert len(stored) == 1, f"the repeat stored a second message: {stored}"


async def test_a_facade_repeat_whose_own_reply_is_lost_gets_the_original_smsid(
    redis: Redis, redis_server: EmbeddedRedis
) -> None:
    """The first call is stored but neither its reply nor its find-out comes back: "outcome unknown". The
    repeat is recognised by Redis (no second message) and its own reply is held past the deadline too. Its
    find-out says its new id was never stored; "nothing was accepted" would be false, since the original goes
    out: the repeat must get the original smsID."""
    marker = f"facade{secrets.token_hex(4)}"
    params = {"key": TOKENS["auth"], "brandID": "1", "numbers": "995591600021", "text": f"Ready ({marker})"}
    async with (
        RedisProxy(redis_server.port) as proxy,
        Stack(proxy.url, env=_late_env(), worker=False) as stack,
    ):
        warm = {**params, "numbers": "995591600022", "text": "Warm"}
        async with stack.http.get(f"{stack.url}/v1/sms/send", params=warm) as response:
            assert response.status == 200
        proxy.delay_replies(3.0)
        async with stack.http.get(f"{stack.url}/v1/sms/send", params=params) as response:
            first = (response.status, await response.json(content_type=None))
        proxy.delay_replies(LATE, when_request_contains=marker)  # the find-out is answered, the send is not
        async with stack.http.get(f"{stack.url}/v1/sms/send", params=params) as response:
            repeat = (response.status, await response.json(content_type=None))
        proxy.no_delay()
        await asyncio.sleep(LATE)
        stored = [k async for k in redis.scan_iter("smsgw:msg:*")]
    assert first[0] == 503 and "outcome unknown" in first[1]["message"], f"no fault: {first}"
    assert len(stored) == 2, f"the repeat stored the call again: {len(stored)} messages"
    assert repeat[0] == 200 and repeat[1]["smsID"] == 2, f"the repeat was not answered the original: {repeat}"


async def test_a_facade_call_repeated_after_a_definite_answer_is_a_new_send(
    redis: Redis, redis_url: str
) -> None:
    """The fingerprint that recognises a repeat lives only until the caller has a definite answer: the same
    call made again afterwards (a second reminder with the same text) is sent again."""
    params = {"key": TOKENS["auth"], "brandID": "1", "numbers": "995591600004", "text": "Reminder: 10:00"}
    async with Stack(redis_url, worker=False) as stack:
        ids = []
        for _ in range(2):
            async with stack.http.get(f"{stack.url}/v1/sms/send", params=params) as response:
                body = await response.json(content_type=None)
            assert response.status == 200 and body["statusID"] == 0, body
            ids.append(body["smsID"])
        marks = [k async for k in redis.scan_iter("smsgw:facade-retry:*")]
    assert ids[0] != ids[1], f"a new call after a definite answer was taken for a repeat: {ids}"
    assert not marks, f"fingerprints left after definite answers: {marks}"


async def test_a_verification_retried_while_its_first_answer_is_late_gets_the_same_verification(
    redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """A create with an Idempotency-Key whose code SMS was stored but whose answer is held past the deadline;
    the caller retries with the same key meanwhile. The retry must answer the same verification (its SMS is
    stored, so the create happened), not 409, and never a second verification or a second SMS."""
    number = "995591600010"
    accept = hashlib.sha1(source("accept").encode()).hexdigest()
    body = {"to": number}
    headers = {"Idempotency-Key": f"signup-{secrets.token_hex(4)}"}
    async with (
        RedisProxy(redis_server.port) as proxy,
        Stack(proxy.url, env=_late_env(), worker=False) as stack,
    ):
        proc, _log = worker(stack, tmp_path, SMSGW_REDIS_URL=redis_server.url)

        async def create() -> tuple[int, Any]:
            url = f"{stack.url}/v1/verifications"
            async with stack.http.post(url, json=body, headers={**stack.auth(), **headers}) as response:
                return response.status, await response.json(content_type=None)

        try:
            warm = await stack.send({"to": "995591600011", "text": "warm"})  # pooled connections
            assert warm["id"]
            proxy.delay_replies(LATE, when_request_contains=accept)
            first = asyncio.create_task(create())
            await asyncio.sleep(0.3)  # the first create's SMS is stored; its answer is still held
            proxy.no_delay()
            retry = await create()
            first_answer = await first
            await within(lambda: _all_reached(stack, [number]), timeout=20)
            await asyncio.sleep(1)
        finally:
            await astop(proc)
        sent = await _sent_count(stack, number)
    assert proxy.delayed >= 1, "the proxy delayed nothing: the fault did not happen"
    assert retry[0] == 201, f"the retry while the first was late: {retry}; first: {first_answer}"
    if first_answer[0] == 201:
        assert first_answer[1]["id"] == retry[1]["id"], (first_answer, retry)
    assert sent == 1, f"uBill got the code's number {sent} times"


async def test_outcome_unknown_tells_each_caller_what_is_safe_to_do_next(
    redis: Redis, redis_server: EmbeddedRedis
) -> None:
    """ "Retry with the same Idempotency-Key" is advice only for a request that had one. A POST without a key
    is told how to look before sending again, and a verification resend (which takes no key) what a repeat
    does; the id each answer names is what the look finds."""
    accept = hashlib.sha1(source("accept").encode()).hexdigest()
    findout = hashlib.sha1(source("findout").encode()).hexdigest()
    env = {**_late_env(), "SMSGW_VERIFY_RESEND_COOLDOWN": "0"}
    async with (
        RedisProxy(redis_server.port) as proxy,
        Stack(proxy.url, env=env, worker=False) as stack,
    ):
        url = f"{stack.url}/v1/verifications"
        async with stack.http.post(url, json={"to": "995591600031"}, headers=stack.auth()) as created:
            verification = await created.json()
            assert created.status == 201, verification
        answers = {}
        proxy.delay_replies(3.0, when_request_contains=(accept, findout))
        body = {"to": "995591600032", "text": "No key"}
        async with stack.http.post(f"{stack.url}/v1/messages", json=body, headers=stack.auth()) as response:
            answers["unkeyed"] = (response.status, await response.json(content_type=None))
        resend = f"{url}/{verification['id']}/resend"
        async with stack.http.post(resend, headers=stack.auth()) as response:
            answers["resend"] = (response.status, await response.json(content_type=None))
        proxy.no_delay()
        await asyncio.sleep(3.0)
        looked = {}
        for name, (_status, problem) in answers.items():
            message_id = problem["detail"].split(":")[0].removeprefix("message ")
            async with stack.http.get(f"{stack.url}/v1/messages/{message_id}", headers=stack.auth()) as r:
                looked[name] = r.status
    for name, (status, problem) in answers.items():
        assert status == 503 and problem["type"].endswith("/outcome-unknown"), (name, answers)
        assert "same Idempotency-Key" not in problem["detail"], (name, problem["detail"])
        assert "/v1/messages/" in problem["detail"], (name, problem["detail"])
    assert "same code" in answers["resend"][1]["detail"], answers["resend"]
    assert looked == {"unkeyed": 200, "resend": 200}, f"the ids named are not what was stored: {looked}"


# --- Break 4 -------------------------------------------------------------------------------------------


async def _settled(stack: Stack, message_id: str) -> bool:
    status = (await stack.get(message_id))["recipients"][0]["status"]
    return status not in ("queued", "dispatching")


async def test_a_foreign_callback_does_not_deliver_a_number_ubill_refused(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """A call to N is out (2 s); a callback ``delivered`` for a foreign smsID and N arrives; uBill then
    refuses the call (no balance). Expected (issue 9.4, contract "Provider callback"): the callback is
    answered 200 and changes nothing; N ends ``rejected``, never ``delivered`` or ``submitted``."""
    number = "995591700001"
    foreign = str(700_000_000 + secrets.randbelow(99_999_999))
    env = {"SMSGW_UBILL_TIMEOUT": "10"}
    async with Stack(redis_url, env=env, sandbox={"latency": "2"}, worker=False) as stack:
        await stack.sandbox_patch({"balance": 0})  # uBill refuses every send: statusID 40
        proc, _log = worker(stack, tmp_path)
        try:
            created = await stack.send({"to": number, "text": "Your invoice is ready"})
            await stack.wait_status(created["id"], "dispatching", timeout=20)
            answered = await callback(stack, foreign, number, 1)
            await within(lambda: _settled(stack, created["id"]), timeout=20)
            await asyncio.sleep(1)
            final = (await stack.get(created["id"]))["recipients"][0]
        finally:
            await astop(proc)
        sent = await _sent_count(stack, number)
    assert sent == 0, "the sandbox accepted the call: the refusal did not happen"
    assert final["status"] not in PROGRESSED, (
        f"uBill refused the call, yet a foreign smsID's callback made the recipient {final['status']!r} "
        f"(provider_sms_id {final['provider_sms_id']!r})"
    )
    assert final["status"] == "rejected", final
    assert answered == 200, f"the foreign callback was answered {answered}"


async def test_a_foreign_callback_does_not_deliver_a_number_ubill_answered_5xx(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """As above, but the call is answered 503 after 2 s (by a hop in front of uBill; uBill never got it) and
    is not retried (``SMSGW_MAX_ATTEMPTS=1``). Expected: N ends ``failed`` (a dead letter), never
    ``delivered`` or ``submitted``; the callback is answered 200."""
    number = "995591700002"
    foreign = str(700_000_000 + secrets.randbelow(99_999_999))
    env = {"SMSGW_UBILL_TIMEOUT": "10", "SMSGW_MAX_ATTEMPTS": "1"}
    async with Stack(redis_url, env=env, worker=False) as stack, UbillGate(stack.sandbox_url) as gate:
        gate.fail_sends_after = 2.0
        proc, _log = worker(stack, tmp_path, SMSGW_UBILL_BASE_URL=f"{gate.url}/v1")
        try:
            created = await stack.send({"to": number, "text": "Your invoice is ready"})
            await stack.wait_status(created["id"], "dispatching", timeout=20)
            answered = await callback(stack, foreign, number, 1)
            await within(lambda: _settled(stack, created["id"]), timeout=20)
            await asyncio.sleep(1)
            final = (await stack.get(created["id"]))["recipients"][0]
        finally:
            await astop(proc)
        sent = await _sent_count(stack, number)
    assert gate.failed >= 1 and sent == 0, "the 5xx did not happen"
    assert final["status"] not in PROGRESSED, (
        f"uBill answered 5xx, yet a foreign smsID's callback made the recipient {final['status']!r} "
        f"(provider_sms_id {final['provider_sms_id']!r})"
    )
    assert final["status"] == "failed", final
    assert answered == 200, f"the foreign callback was answered {answered}"


async def test_a_verification_whose_key_cannot_be_finished_is_still_answered_201(
    redis: Redis, redis_server: EmbeddedRedis
) -> None:
    """The code's SMS is stored, then Redis fails the key's finishing write (its reply held past the timeout).
    The create happened and the code goes out: 503 "nothing was accepted" would be false and invite a second
    verification under a new key. The answer is 201; a retry with the key answers the same verification."""
    body = {"to": "995591600020"}
    headers = {"Idempotency-Key": f"signup-{secrets.token_hex(4)}"}
    async with (
        RedisProxy(redis_server.port) as proxy,
        Stack(proxy.url, env=_late_env(), worker=False) as stack,
    ):

        async def create() -> tuple[int, Any]:
            url = f"{stack.url}/v1/verifications"
            async with stack.http.post(url, json=body, headers={**stack.auth(), **headers}) as response:
                return response.status, await response.json(content_type=None)

        proxy.delay_replies(LATE, when_request_contains="|201")  # only the key's finished record says 201
        first = await create()
        proxy.no_delay()
        assert proxy.delayed >= 1, "the proxy delayed nothing: the fault did not happen"
        retry = await create()
        verifications = [k async for k in redis.scan_iter(vkeys.verification("ver_*"))]
    assert first[0] == 201, f"a create whose SMS is stored was answered {first}"
    assert retry[0] == 201 and retry[1]["id"] == first[1]["id"], (first, retry)
    assert len(verifications) == 1, verifications


async def test_a_cancel_whose_reply_is_late_does_not_claim_nothing_changed(
    redis: Redis, redis_server: EmbeddedRedis
) -> None:
    """Redis ran the cancel; its reply is held past the timeout. The 503 must not say (in words or in the
    ``nothing_changed`` member a client repeats a non-idempotent call on) that nothing happened: the message
    is cancelled (an accept that never reached Redis says both: tests/gateway/test_messages.py)."""
    cancel = hashlib.sha1(source("cancel").encode()).hexdigest()
    async with (
        RedisProxy(redis_server.port) as proxy,
        Stack(proxy.url, env=_late_env(), worker=False) as stack,
    ):
        later = datetime.now(UTC) + timedelta(days=1)
        sent = await stack.send({"to": "995591600030", "text": "later", "send_at": later.isoformat()})
        proxy.delay_replies(LATE, when_request_contains=cancel)
        url = f"{stack.url}/v1/messages/{sent['id']}"
        async with stack.http.delete(url, headers=stack.auth()) as response:
            late = (response.status, await response.json(content_type=None))
        proxy.no_delay()
        assert proxy.delayed >= 1, "the proxy delayed nothing: the fault did not happen"
        status = str(await redis.hget(f"smsgw:msg:{sent['id']}", "r:995591600030")).split("|")[0]
    assert status == "cancelled", status
    assert late[0] == 503 and "nothing_changed" not in late[1], late
    assert "nothing was accepted" not in late[1]["detail"], late
