"""Phone verification while Redis misbehaves: every answer true, and the flow whole once Redis is back.

Real parts only: a ``redis-server`` of the test's own, put out of memory (``maxmemory`` + ``noeviction``),
into ``MISCONF`` (a failed write to disk), read-only (a failover made it a replica), stopped with SIGSTOP for
longer than ``SMSGW_REDIS_TIMEOUT``, or SIGKILLed and restarted from its AOF; ``smsgw gateway`` and ``smsgw
worker`` as real processes whose JSON logs are read; the uBill sandbox over HTTP. What counts is what uBill
received and what Redis holds after the fault.

During the fault each endpoint is called once: create (without and with an ``Idempotency-Key``), check (a
wrong code, then the right one), resend and read. Each answer is a correct non-5xx answer or a 503
``application/problem+json`` with ``Retry-After``: never a 500, never a stack trace. A 503 that says
``"nothing_changed": true`` must be true: that request wrote nothing and queued no SMS. After relief the same
flow finishes: a retry with the same key answers the stored verification (or stores one, once), the right code
approves once, attempts and sends are what was answered, each created verification's code went out exactly
once, and no code is in any answer or log line.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from smsgw.devtools.redis import EmbeddedRedis, free_port
from smsgw.store.verifications import keys as vkeys
from smsgw.verify.sealing import code_context
from tests.faults.support import (
    FAULT_SIGN,
    REDIS_ERROR_FAULTS,
    admin,
    log_text,
    pause,
    probe_write,
    resume,
    within,
    worker,
)
from tests.gateway.conftest import PROBLEM_JSON, Answer, assert_no_secrets
from tests.harness import TOKENS, Stack, answers_200, astop, eventually, spawn
from tests.verify.support import CODE, texts_to, wrong

FAULTS = ["oom", "misconf", "readonly", "sigstop", "restart"]
CODE_LENGTH = 10  # long codes: a code found in a body or a log line is a code, not a coincidence
ENV = {
    "SMSGW_REDIS_TIMEOUT": "0.5",
    "SMSGW_VERIFY_RESEND_COOLDOWN": "0",
    "SMSGW_VERIFY_SWEEP_INTERVAL": "1",
}


@dataclass
class Gateway:
    """``smsgw gateway`` as a real process, and every answer it gave."""

    url: str
    http: aiohttp.ClientSession
    answers: list[tuple[str, Answer]] = field(default_factory=list)

    async def call(
        self, name: str, method: str, path: str, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Answer:
        sent = {"Authorization": f"Bearer {TOKENS['auth']}", **(headers or {})}
        async with self.http.request(method, self.url + path, headers=sent, **kwargs) as response:
            text = await response.text()
            answer = Answer(response.status, response.headers, response.content_type, text)
        assert_no_secrets(answer)
        self.answers.append((name, answer))
        return answer

    async def create(self, name: str, number: str, key: str | None = None) -> Answer:
        headers = {"Idempotency-Key": key} if key is not None else None
        body = {"to": number, "code_length": CODE_LENGTH}
        return await self.call(name, "POST", "/v1/verifications", headers=headers, json=body)

    async def check(self, name: str, verification_id: str, code: str) -> Answer:
        path = f"/v1/verifications/{verification_id}/check"
        return await self.call(name, "POST", path, json={"code": code})

    async def resend(self, name: str, verification_id: str) -> Answer:
        return await self.call(name, "POST", f"/v1/verifications/{verification_id}/resend")

    async def get(self, name: str, verification_id: str) -> dict[str, Any]:
        answer = await self.call(name, "GET", f"/v1/verifications/{verification_id}")
        assert answer.status == 200, (name, answer.status, answer.text)
        data: dict[str, Any] = answer.json()
        return data


def _unavailable(answer: Answer) -> bool:
    """The contract's 503: problem+json, ``Retry-After`` in seconds, the problem's own status."""
    if answer.status != 503 or answer.content_type != PROBLEM_JSON:
        return False
    body = answer.json()
    return str(answer.headers.get("Retry-After", "")).isdigit() and body.get("status") == 503


def _nothing_changed(answer: Answer) -> bool:
    return answer.status == 503 and answer.json().get("nothing_changed") is True


def _true_kind(name: str, answer: Answer, allowed: tuple[int, ...]) -> str | None:
    """What is wrong with an answer given during the fault (None: nothing)."""
    if "Traceback" in answer.text or 'File "' in answer.text:
        return f"{name}: a stack trace in the body: {answer.text[:300]}"
    if answer.status in allowed or _unavailable(answer):
        return None
    return f"{name}: {answer.status} {answer.content_type} Retry-After={answer.headers.get('Retry-After')}"


async def _inject(fault: str, server: EmbeddedRedis, r: Redis) -> None:
    if fault in REDIS_ERROR_FAULTS:
        await REDIS_ERROR_FAULTS[fault][0](r, server.data_dir)
        assert FAULT_SIGN[fault] in await probe_write(r), "the fault did not take"
    elif fault == "sigstop":
        pause(server)
    else:
        server.kill()


async def _relieve(fault: str, server: EmbeddedRedis, r: Redis) -> None:
    if fault in REDIS_ERROR_FAULTS:
        await REDIS_ERROR_FAULTS[fault][1](r, server.data_dir)
    elif fault == "sigstop":
        resume(server)
    else:
        server.start()


async def _records(r: Redis) -> dict[str, list[dict[str, str]]]:
    """Every verification record in Redis, by number."""
    found: dict[str, list[dict[str, str]]] = {}
    async for key in r.scan_iter(vkeys.verification("ver_*")):
        fields: dict[str, str] = await r.hgetall(key)
        if fields:
            found.setdefault(fields["to"], []).append({"id": key.rsplit(":", 1)[-1], **fields})
    return found


async def _sms_count(stack: Stack, number: str) -> int:
    return (await stack.sandbox_counts()).get(number, 0)


async def _sms_reached(stack: Stack, number: str, count: int) -> bool:
    return await _sms_count(stack, number) >= count


async def _code(stack: Stack, number: str, nth: int = 1) -> str:
    text = (await texts_to(stack, number, nth))[nth - 1]
    match = CODE.search(text)
    assert match, "no code in the SMS text"
    return match.group(1)


async def _start_gateway(stack: Stack, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = tmp_path / "gateway.log"
    proc = spawn("gateway", {**stack.env, "SMSGW_HTTP_PORT": str(port)}, log)
    url = f"http://127.0.0.1:{port}"
    await eventually(lambda: answers_200(f"{url}/readyz"), timeout=20)
    return proc, url, log


@pytest.mark.parametrize("fault", FAULTS)
async def test_verification_answers_are_true_during_a_redis_fault_and_the_flow_finishes_after(
    fault: str, fault_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    n = FAULTS.index(fault)
    number = {name: f"9955918{n}{i:04d}" for i, name in enumerate(("a", "b", "plain", "keyed", "after"))}
    key = f"signup-{fault}"
    r = admin(fault_redis)
    async with Stack(fault_redis.url, env=ENV, worker=False) as stack:
        (gw_proc, url, gw_log), (wk_proc, wk_log) = await asyncio.gather(
            _start_gateway(stack, tmp_path), asyncio.to_thread(worker, stack, tmp_path)
        )
        gw = Gateway(url, stack.http)
        try:
            # Healthy: two verifications whose codes went out (A is checked during the fault, B resent).
            a = (await gw.create("create A", number["a"])).json()
            b = (await gw.create("create B", number["b"])).json()
            code_a, code_b = await _code(stack, number["a"]), await _code(stack, number["b"])

            await _inject(fault, fault_redis, r)
            try:
                during = {
                    # First: on a connection pooled before the fault (a stopped Redis takes the request).
                    "create with key": await gw.create("keyed create during", number["keyed"], key),
                    "create": await gw.create("create during", number["plain"]),
                    "check wrong": await gw.check("wrong check during", a["id"], wrong(code_a)),
                    "check right": await gw.check("right check during", a["id"], code_a),
                    "resend": await gw.resend("resend during", b["id"]),
                    "get": await gw.call("get during", "GET", f"/v1/verifications/{a['id']}"),
                }
            finally:
                await _relieve(fault, fault_redis, r)
            await eventually(lambda: answers_200(f"{url}/readyz"), timeout=20)
            await r.aclose()
            r = admin(fault_redis)

            allowed = {
                "create": (201,),
                "create with key": (201,),
                "check wrong": (200,),
                "check right": (200,),
                "resend": (200,),
                "get": (200,),
            }
            wrongs = [_true_kind(op, ans, allowed[op]) for op, ans in during.items()]
            assert not [w for w in wrongs if w], f"answers under {fault} that break the contract: {wrongs}"
            # The same key again: the original if it was stored, else stored now, once.
            retry = await gw.create("keyed retry after", number["keyed"], key)
            assert retry.status == 201, (
                f"a retry with the same Idempotency-Key after {fault} was answered {retry.status} "
                f"{retry.text[:300]}; the create during the fault was {during['create with key'].status} "
                f"{during['create with key'].text[:300]}"
            )
            if during["create with key"].status == 201:
                assert retry.json()["id"] == during["create with key"].json()["id"]
            fresh = await gw.create("create after", number["after"])
            assert fresh.status == 201, fresh.text

            # Every code that must go out has gone out (the worker drains once Redis is back).
            expected = {number["keyed"]: 1, number["after"]: 1}
            if during["create"].status == 201:
                expected[number["plain"]] = 1
            if during["resend"].status == 200:
                expected[number["b"]] = 2
            for to, count in expected.items():
                arrived = await within(functools.partial(_sms_reached, stack, to, count), timeout=20)
                assert arrived, f"{to} did not get its {count} code SMS after {fault} was relieved"
            await asyncio.sleep(1.5)  # a duplicate would be at uBill by now
            records = await _records(r)
            sms = {name: await _sms_count(stack, to) for name, to in number.items()}

            # Creates: 201 = one SMS; "nothing changed" = no record, no SMS; otherwise at most one SMS.
            plain = during["create"]
            if plain.status == 201:
                assert sms["plain"] == 1, f"a create answered 201 under {fault} sent {sms['plain']} SMS"
            elif _nothing_changed(plain):
                assert sms["plain"] == 0 and number["plain"] not in records, (
                    f"a create answered 503 nothing_changed under {fault} left "
                    f"{records.get(number['plain'])} and sent {sms['plain']} SMS: {plain.text}"
                )
            else:
                assert sms["plain"] <= 1, f"a create answered 503 under {fault} sent {sms['plain']} SMS"
            keyed_ids = {v["id"] for v in records.get(number["keyed"], []) if v["st"] == "pending"}
            assert sms["keyed"] == 1, (
                f"the keyed create (and its retry) sent {sms['keyed']} SMS under {fault}"
            )
            assert retry.json()["id"] in keyed_ids
            if _nothing_changed(during["create with key"]):
                assert len(records[number["keyed"]]) == 1, records[number["keyed"]]
            assert sms["after"] == 1

            # Checks: attempts counted are those answered 200, plus at most the 503s that did not say
            # "nothing changed"; the right code then approves, once.
            checks = [during["check wrong"], during["check right"]]
            counted = sum(c.status == 200 for c in checks)
            maybe = sum(c.status == 503 and not _nothing_changed(c) for c in checks)
            now_a = await gw.get("get A after", a["id"])
            assert counted <= now_a["attempts"] <= counted + maybe, (
                f"A has {now_a['attempts']} attempts after {fault}; answers: "
                f"{[(c.status, c.text[:200]) for c in checks]}"
            )
            approved_during = during["check right"].status == 200
            if approved_during:
                assert during["check right"].json() == {"status": "approved", "attempts": counted}
            if now_a["status"] == "pending":
                hit = await gw.check("right check after", a["id"], code_a)
                assert hit.status == 200, hit.text
                assert hit.json() == {"status": "approved", "attempts": now_a["attempts"] + 1}
            else:
                assert now_a["status"] == "approved", now_a
                assert approved_during or during["check right"].status == 503, now_a
            again = await gw.check("right check again", a["id"], code_a)
            assert again.status == 409, again.text

            # Resend: the record's sends and uBill agree with the answer.
            now_b = await gw.get("get B after", b["id"])
            resent = during["resend"]
            if resent.status == 200:
                assert (now_b["sends"], sms["b"]) == (2, 2), (now_b, sms["b"])
                assert resent.json()["message_id"] == now_b["message_id"]
            elif _nothing_changed(resent):
                assert (now_b["sends"], sms["b"]) == (1, 1), (now_b, sms["b"], resent.text)
            else:
                assert sms["b"] in (1, 2) and now_b["sends"] >= sms["b"], (now_b, sms["b"])
            code_b_last = await _code(stack, number["b"], sms["b"])
            assert code_b_last == code_b, "a resend carried another code"
            approve_b = await gw.check("check B after", b["id"], code_b)
            assert approve_b.json() == {"status": "approved", "attempts": 1}, approve_b.text

            # Codes: every code that went out, and every sealed code still in Redis.
            codes = {m.group(1) for s in await stack.sandbox_sends() for m in CODE.finditer(s["text"])}
            keyring = stack.settings.verify.keyring
            for versions in (await _records(r)).values():
                codes.update(
                    keyring.open(v["code"], code_context(v["id"])) for v in versions if v.get("code")
                )
        finally:
            await asyncio.gather(astop(gw_proc), astop(wk_proc))
            if fault == "sigstop":
                resume(fault_redis)
    await r.aclose()
    assert len(codes) >= 4
    for name, answer in gw.answers:
        assert answer.status != 500, (name, answer.text)
        assert not [c for c in codes if c in answer.text], f"a code in the answer to {name}"
        assert not [c for c in codes if c in str(dict(answer.headers))], f"a code in a header of {name}"
    logs = {"gateway": log_text(gw_log), "worker": log_text(wk_log)}
    for process, text in logs.items():
        assert not [c for c in codes if c in text], f"a code in the {process}'s log"
    if fault == "sigstop":  # the keyed create's script ran once Redis resumed: its key was left pending
        assert "verification.create_taken_over" in logs["gateway"], "the stalled create never reached Redis"
    assert "Traceback" not in logs["gateway"], f"a stack trace in the gateway's log under {fault}"
    assert '"request.failed"' not in logs["gateway"], f"the gateway failed a request under {fault}"
