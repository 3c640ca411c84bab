"""Helpers for verification tests over real HTTP: start, resend, check and read a verification, and read the
code the way a user does, from the SMS the sandbox (uBill) received."""

from __future__ import annotations

import re
from typing import Any

from tests.gateway.conftest import Answer, call
from tests.harness import Stack, eventually

CODE = re.compile(r"(?<!\d)(\d{4,10})(?!\d)")


async def start(stack: Stack, body: dict[str, Any], who: str = "auth", key: str | None = None) -> Answer:
    headers = {"Idempotency-Key": key} if key is not None else None
    return await call(stack, "POST", "/v1/verifications", who=who, json=body, headers=headers)


async def started(stack: Stack, body: dict[str, Any], who: str = "auth") -> dict[str, Any]:
    answer = await start(stack, body, who)
    assert answer.status == 201, answer.text
    data: dict[str, Any] = answer.json()
    return data


async def resend(stack: Stack, verification_id: str, who: str = "auth") -> Answer:
    return await call(stack, "POST", f"/v1/verifications/{verification_id}/resend", who=who)


async def check(stack: Stack, verification_id: str, code: str, who: str = "auth") -> Answer:
    return await call(
        stack, "POST", f"/v1/verifications/{verification_id}/check", who=who, json={"code": code}
    )


async def get(stack: Stack, verification_id: str, who: str = "auth") -> Answer:
    return await call(stack, "GET", f"/v1/verifications/{verification_id}", who=who)


async def texts_to(stack: Stack, number: str, count: int = 1, timeout: float = 15.0) -> list[str]:
    """The texts uBill received for ``number``, once there are ``count`` of them."""
    found: list[str] = []

    async def arrived() -> bool:
        nonlocal found
        found = [s["text"] for s in await stack.sandbox_sends() if number in s["numbers"]]
        return len(found) >= count

    await eventually(arrived, timeout=timeout)
    return found


async def code_sent_to(stack: Stack, number: str, nth: int = 1) -> str:
    """The code of the nth SMS to ``number``, read from the text as a user reads it."""
    text = (await texts_to(stack, number, nth))[nth - 1]
    match = CODE.search(text)
    assert match, "no code in the SMS text"
    return match.group(1)


def wrong(code: str) -> str:
    """A code of the same length that is certainly not ``code``."""
    return "".join(str((int(c) + 1) % 10) for c in code)
