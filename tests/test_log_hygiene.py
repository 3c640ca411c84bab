"""Secrets never reach a log line; phone numbers are masked (real processes, debug level, JSON logs)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from smsgw.devtools.redis import free_port
from tests.harness import (
    CALLBACK_KEY,
    TOKENS,
    UBILL_KEY,
    answers_200,
    astop,
    base_env,
    eventually,
    spawn,
)

NUMBERS = ["995591000901", "995591000902", "995591000903"]


async def test_logs_of_an_end_to_end_run_hold_no_secret_and_no_full_number(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    gateway_port, sandbox_port = free_port(), free_port()
    gateway_url, sandbox_url = f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{sandbox_port}"
    env = base_env(
        redis_url,
        f"{sandbox_url}/v1",
        SMSGW_HTTP_PORT=str(gateway_port),
        SMSGW_LOG_LEVEL="debug",
        SMSGW_BALANCE_INTERVAL="0.5",
        SMSGW_UBILL_TIMEOUT="0.5",
    )
    env.update(
        {
            "SMSGW_SANDBOX_PORT": str(sandbox_port),
            "SMSGW_SANDBOX_API_KEY": UBILL_KEY,
            "SMSGW_SANDBOX_CALLBACK_URL": f"{gateway_url}/callbacks/ubill",
            "SMSGW_SANDBOX_CALLBACK_KEY": CALLBACK_KEY,
            "SMSGW_SANDBOX_CALLBACK_DELAY": "0.05",
        }
    )
    logs = {name: tmp_path / f"{name}.log" for name in ("sandbox", "gateway", "worker")}
    processes = [spawn(name, env, path) for name, path in logs.items()]
    try:
        await eventually(lambda: answers_200(f"{gateway_url}/readyz"), timeout=20)
        await eventually(lambda: answers_200(f"{sandbox_url}/healthz"), timeout=20)
        auth = {"Authorization": f"Bearer {TOKENS['auth']}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{gateway_url}/v1/messages", json={"to": NUMBERS, "text": "hi"}, headers=auth
            ) as r:
                message = await r.json()
            async with http.post(
                f"{gateway_url}/v1/messages", json={"to": "+1 555 0100", "text": "x"}, headers=auth
            ) as r:
                assert r.status == 422
            async with http.get(
                f"{gateway_url}/v1/messages/x", headers={"Authorization": "Bearer wrong-token"}
            ):
                pass
            await http.get(f"{gateway_url}/callbacks/ubill?key=not-the-key&smsID=1&number=995591000901")
            params = {"key": TOKENS["auth"], "brandID": "1", "numbers": NUMBERS[0], "text": "facade"}
            async with http.get(f"{gateway_url}/v1/sms/send", params=params) as r:
                assert (await r.json())["statusID"] == 0
            async with http.patch(f"{sandbox_url}/_sandbox/config", json={"stall_rate": 1}):
                pass
            async with http.post(
                f"{gateway_url}/v1/messages", json={"to": NUMBERS[2], "text": "stall"}, headers=auth
            ) as r:
                stalled = await r.json()
            for target in (message["id"], stalled["id"]):

                async def done(message_id: str = target) -> bool:
                    async with http.get(f"{gateway_url}/v1/messages/{message_id}", headers=auth) as r:
                        body = await r.json()
                    return all(x["status"] in ("delivered", "unknown") for x in body["recipients"])

                await eventually(done, timeout=20)
            await asyncio.sleep(1.0)  # a balance poll (URL with the key in its query) has happened
    finally:
        for process in processes:
            await astop(process)
    text = "\n".join(path.read_text() for path in logs.values())
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) > 20 and any(line["event"] == "dispatch.unknown" for line in lines)
    for secret in (UBILL_KEY, CALLBACK_KEY, *TOKENS.values()):
        assert secret not in text, f"a secret leaked into the logs: {secret[:6]}…"
    for number in NUMBERS:
        assert number not in text, "an unmasked phone number is in the logs"
    assert re.search(r"995591\*\*\*90[12]", text), "masked numbers are still useful in the logs"
