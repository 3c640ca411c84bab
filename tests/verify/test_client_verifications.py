"""``smsgw.client``'s verification calls against the real gateway, worker, sandbox and Redis: the README's
sign-up flow, the errors a caller meets, and an event stream that carries verification events."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from smsgw.client import ConflictError, NotFoundError, RateLimitedError, SmsGatewayClient
from tests.harness import TOKENS, Stack
from tests.verify.support import code_sent_to, wrong

NUMBER = "995591000901"


async def test_the_readme_sign_up_flow(redis_url: str) -> None:
    async with Stack(redis_url) as stack, SmsGatewayClient(stack.url, TOKENS["auth"]) as sms:
        # The README's five lines, the user's typing replaced by reading the SMS uBill received.
        verification = await sms.start_verification("+995 591 00 09 01", reference="signup-42")
        code = await code_sent_to(stack, NUMBER)  # the user reads the SMS and types the code
        result = await sms.check_verification(verification.id, code)
        assert result.approved
        assert (result.status, result.attempts) == ("approved", 1)

        assert (verification.to, verification.status, verification.sends) == (NUMBER, "pending", 1)
        assert verification.reference == "signup-42"
        assert verification.expires_at.tzinfo is not None
        latest = await sms.get_verification(verification.id)
        assert (latest.status, latest.is_final) == ("approved", True)
        with pytest.raises(ConflictError):
            await sms.check_verification(verification.id, code)
        with pytest.raises(ConflictError):
            await sms.resend_verification(verification.id)
        with pytest.raises(NotFoundError):
            await sms.get_verification("ver_unknown")


async def test_wrong_codes_cooldown_and_options(redis_url: str) -> None:
    async with Stack(redis_url) as stack, SmsGatewayClient(stack.url, TOKENS["auth"]) as sms:
        verification = await sms.start_verification(NUMBER, code_length=8, ttl=120, locale="ka", brand_id=2)
        code = await code_sent_to(stack, NUMBER)
        assert len(code) == 8
        miss = await sms.check_verification(verification.id, wrong(code))
        assert (miss.status, miss.attempts, miss.approved) == ("pending", 1, False)
        with pytest.raises(RateLimitedError) as info:
            await sms.resend_verification(verification.id)  # 30 s cooldown: too long to wait for
        assert info.value.retry_after is not None
        assert 29 <= info.value.retry_after <= 30


async def test_a_retried_start_sends_one_sms(redis_url: str) -> None:
    async with Stack(redis_url) as stack, SmsGatewayClient(stack.url, TOKENS["auth"]) as sms:
        first = await sms.start_verification(NUMBER, idempotency_key="signup-42")
        again = await sms.start_verification(NUMBER, idempotency_key="signup-42")
        assert again.id == first.id
        await code_sent_to(stack, NUMBER)
        await asyncio.sleep(0.2)
        assert len([s for s in await stack.sandbox_sends() if NUMBER in s["numbers"]]) == 1


async def test_the_event_stream_skips_verification_events_for_message_consumers(redis_url: str) -> None:
    async with Stack(redis_url) as stack, SmsGatewayClient(stack.url, TOKENS["auth"]) as sms:
        verification = await sms.start_verification(NUMBER)
        code = await code_sent_to(stack, NUMBER)
        await sms.check_verification(verification.id, code)  # a verification event in the stream
        message = await sms.send("995591000902", "hello")
        async with aclosing(sms.events(last_event_id="0", reconnect=False)) as events, asyncio.timeout(10):
            async for event in events:
                if event.message_id == message.id:
                    break
