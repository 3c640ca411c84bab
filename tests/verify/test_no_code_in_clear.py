"""No verification code in clear anywhere but the SMS: not in Redis (every key and value), not in its AOF,
not in logs, metrics, events or error bodies. Real processes (sandbox, gateway, worker), JSON logs at debug.

Codes here are 10 digits, so a chance match with the digits of timestamps and ids in the AOF is out of the
question (about 1e-10 per position); the texts' fixed wording is searched for as well, to prove the SMS
text itself is sealed, whatever the code.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from smsgw.clock import now_ms
from smsgw.devtools.redis import EmbeddedRedis, free_port
from smsgw.store.verifications import keys as vkeys
from tests.harness import CALLBACK_KEY, TOKENS, UBILL_KEY, answers_200, astop, base_env, eventually, spawn
from tests.verify.support import CODE, wrong

SECRET = "verify-secret-7f3e9a1c5b2d4e6f"
A, B, C = "995591000901", "995591000902", "995591000903"
PUMPED = [f"99559300{i:04d}" for i in range(4)]
PHRASES = ("verification code", "Do not share", "არავის")


class Client:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.bodies: list[str] = []
        self.auth = {"Authorization": f"Bearer {TOKENS['auth']}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=body, headers=self.auth) as r:
            text = await r.text()
        self.bodies.append(text)
        return r.status, json.loads(text) if text.startswith(("{", "[")) else text


async def sandbox_codes(http: aiohttp.ClientSession, sandbox: str, number: str, count: int) -> list[str]:
    codes: list[str] = []

    async def arrived() -> bool:
        nonlocal codes
        async with http.get(f"{sandbox}/_sandbox/sends") as r:
            sends = (await r.json())["sends"]
        codes = [m.group(1) for s in sends if number in s["numbers"] if (m := CODE.search(s["text"]))]
        return len(codes) >= count

    await eventually(arrived, timeout=20)
    return codes


async def redis_dump(redis: Redis) -> str:
    """Every key and every value, whatever its type."""
    out = []
    async for key in redis.scan_iter(count=1000):
        kind = await redis.type(key)
        if kind == "string":
            value: Any = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(await redis.smembers(key))
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = await redis.xrange(key)
        else:
            value = kind
        out.append(f"{key} {json.dumps(value, ensure_ascii=False, default=str)}")
    return "\n".join(out)


async def test_no_code_in_clear_in_redis_aof_logs_metrics_events_or_errors(
    redis: Redis, redis_url: str, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in ("gateway", "sandbox", "worker")}
    gateway, sandbox = f"http://127.0.0.1:{ports['gateway']}", f"http://127.0.0.1:{ports['sandbox']}"
    env = base_env(
        redis_url,
        f"{sandbox}/v1",
        SMSGW_HTTP_PORT=str(ports["gateway"]),
        SMSGW_WORKER_HTTP_PORT=str(ports["worker"]),
        SMSGW_LOG_LEVEL="debug",
        SMSGW_VERIFY_SECRETS=SECRET,
        SMSGW_VERIFY_RESEND_COOLDOWN="1",
        SMSGW_VERIFY_NUMBER_LIMIT="2/3600",
        SMSGW_VERIFY_GUARD_MIN_STARTED="3",
        SMSGW_VERIFY_SWEEP_INTERVAL="0.2",
        SMSGW_VERIFY_BRAND_NAMES='{"1": "Acme"}',
    )
    env.update(
        {
            "SMSGW_SANDBOX_PORT": str(ports["sandbox"]),
            "SMSGW_SANDBOX_API_KEY": UBILL_KEY,
            "SMSGW_SANDBOX_CALLBACK_URL": f"{gateway}/callbacks/ubill",
            "SMSGW_SANDBOX_CALLBACK_KEY": CALLBACK_KEY,
            "SMSGW_SANDBOX_CALLBACK_DELAY": "0.05",
        }
    )
    logs = {name: tmp_path / f"{name}.log" for name in ("sandbox", "gateway", "worker")}
    processes = [spawn(name, env, path) for name, path in logs.items()]
    try:
        await eventually(lambda: answers_200(f"{gateway}/readyz"), timeout=20)
        await eventually(lambda: answers_200(f"{sandbox}/healthz"), timeout=20)
        await eventually(lambda: answers_200(f"http://127.0.0.1:{ports['worker']}/readyz"), timeout=20)
        async with aiohttp.ClientSession() as http:
            api = Client(http, gateway)
            # A: wrong check, resend (same code), right check, a check too many, then the number's limit.
            status, a = await api.call(
                "POST", "/v1/verifications", {"to": A, "code_length": 10, "reference": "r"}
            )
            assert status == 201, a
            (code_a,) = await sandbox_codes(http, sandbox, A, 1)
            assert (await api.call("POST", f"/v1/verifications/{a['id']}/check", {"code": wrong(code_a)}))[
                0
            ] == 200
            await asyncio.sleep(1.05)
            assert (await api.call("POST", f"/v1/verifications/{a['id']}/resend"))[0] == 200
            assert set(await sandbox_codes(http, sandbox, A, 2)) == {code_a}
            assert (await api.call("POST", f"/v1/verifications/{a['id']}/check", {"code": code_a}))[1] == {
                "status": "approved",
                "attempts": 2,
            }
            assert (await api.call("POST", f"/v1/verifications/{a['id']}/check", {"code": code_a}))[0] == 409
            assert (await api.call("POST", "/v1/verifications", {"to": A, "code_length": 10}))[0] == 429
            # B: Georgian, five wrong checks: failed.
            status, b = await api.call(
                "POST", "/v1/verifications", {"to": B, "code_length": 10, "locale": "ka"}
            )
            (code_b,) = await sandbox_codes(http, sandbox, B, 1)
            for _ in range(5):
                await api.call("POST", f"/v1/verifications/{b['id']}/check", {"code": wrong(code_b)})
            assert (await api.call("GET", f"/v1/verifications/{b['id']}"))[1]["status"] == "failed"
            # C: expires (time moved on in Redis); the sweep publishes it.
            status, c = await api.call("POST", "/v1/verifications", {"to": C, "code_length": 10})
            (code_c,) = await sandbox_codes(http, sandbox, C, 1)
            await redis.hset(vkeys.verification(c["id"]), "ea", str(now_ms() - 1))
            await redis.zadd(vkeys.EXPIRIES, {c["id"]: now_ms() - 1})

            async def expired() -> bool:
                return bool((await api.call("GET", f"/v1/verifications/{c['id']}"))[1]["status"] == "expired")

            await eventually(expired, timeout=5)
            # A pumped prefix: three started, none approved, the fourth refused.
            for number in PUMPED[:3]:
                assert (await api.call("POST", "/v1/verifications", {"to": number, "code_length": 10}))[
                    0
                ] == 201
            status, refusal = await api.call(
                "POST", "/v1/verifications", {"to": PUMPED[3], "code_length": 10}
            )
            assert (status, refusal["type"].rsplit("/", 1)[1]) == (429, "fraud-suspected")
            pumped_codes = [(await sandbox_codes(http, sandbox, n, 1))[0] for n in PUMPED[:3]]

            async with http.get(f"{gateway}/metrics") as r:
                metrics = await r.text()
            async with http.get(f"http://127.0.0.1:{ports['worker']}/metrics") as r:
                metrics += await r.text()
            events: list[str] = []
            async with http.get(
                f"{gateway}/v1/events", params={"last_event_id": "0"}, headers=api.auth
            ) as response:
                while True:
                    try:
                        line = await asyncio.wait_for(response.content.readline(), 1.0)
                    except TimeoutError:
                        break
                    if line.startswith(b"data: "):
                        events.append(line.decode())
                    if not line:
                        break
            dump = await redis_dump(redis)
    finally:
        for process in processes:
            await astop(process)

    codes = [code_a, code_b, code_c, *pumped_codes]
    assert all(len(code) == 10 for code in codes)
    assert len(set(codes)) == len(codes)
    # Events: every kind, no code.
    statuses = [json.loads(e[6:]) for e in events]
    verification_events = [e for e in statuses if e.get("kind") == "verification"]
    assert {e["status"] for e in verification_events} == {"approved", "failed", "expired"}
    aof = b"".join(p.read_bytes() for p in sorted(redis_server.data_dir.rglob("*")) if p.is_file())
    assert b"appendonly" in aof or len(aof) > 10_000  # the AOF is really there
    places = {
        "redis": dump,
        "metrics": metrics,
        "events": "".join(events),
        "answers": "\n".join(api.bodies),
        "gateway log": logs["gateway"].read_text(),
        "worker log": logs["worker"].read_text(),
        "sandbox log": logs["sandbox"].read_text(),
    }
    for code in codes:
        for where, text in places.items():
            assert code not in text, f"a code is in clear in the {where}"
        assert code.encode() not in aof, "a code is in clear in the AOF"
    for phrase in PHRASES:
        assert phrase not in dump, "an SMS text is in clear in Redis"
        assert phrase.encode() not in aof, "an SMS text is in clear in the AOF"
    # Secrets and full numbers stay out of the logs; the limits and the block are logged, numbers masked.
    log_text = places["gateway log"] + places["worker log"] + places["sandbox log"]
    for secret in (SECRET, UBILL_KEY, CALLBACK_KEY, *TOKENS.values()):
        assert secret not in log_text
    for number in (A, B, C, *PUMPED):
        assert number not in log_text
    lines = [json.loads(line) for line in places["gateway log"].splitlines() if line.startswith("{")]
    events_logged = {line["event"] for line in lines}
    assert {"verification.started", "verification.checked", "verification.resent"} <= events_logged
    refused = [line for line in lines if line["event"] == "verification.start_refused"]
    assert [(line["reason"], line["number"]) for line in refused] == [("number", "995591***901")]
    (block,) = [line for line in lines if line["event"] == "verification.prefix_blocked"]
    assert (block["prefix"], block["started"], block["approved"]) == ("99559300xxxx", 3, 0)
    assert re.search(
        r'smsgw_verification_blocked_total\{client="auth-service",reason="fraud_suspected"\} 1', metrics
    )
