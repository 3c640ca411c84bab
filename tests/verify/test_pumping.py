"""A small version of ``ops.bench.pumping`` on the test stack (real gateway, worker, sandbox, Redis; default
guard settings): the bot's prefix is blocked after 20 of its verifications, no legitimate one is refused."""

from __future__ import annotations

from ops.bench.pumping import Plan, simulate, verdict
from tests.harness import TOKENS, Stack

SMALL = Plan(
    duration=8.0,
    legit_prefixes=12,
    busy_prefixes=1,
    busy_share=0.4,  # one prefix gets ~32 legitimate starts: past the guard's 20, converting at ~70 %
    legit_verifications=80,
    approve_delay=(0.5, 2.0),
    bot_start=1.0,
    bot_rate=10.0,
    bot_verifications=40,
)


async def test_the_bot_is_blocked_and_no_legitimate_verification_is(redis_url: str) -> None:
    async with Stack(redis_url) as live:
        report = await simulate(live.http, live.url, live.sandbox_url, TOKENS["auth"], SMALL)
    assert all(verdict(report).values()), report
    bot, legit = report["bot"], report["legit"]
    # The default rule: 20 started with none approved, so the 21st is refused, and every later one.
    assert (bot["verifications_before_block"], bot["started"], bot["refused"]) == (20, 20, 20)
    assert bot["sms_received_by_ubill"] == 20
    assert legit["started"] == 80
    assert legit["refused"] == 0
    assert 0.55 <= legit["approved_share"] <= 0.85
    (busiest,) = legit["busy_prefixes"]
    assert busiest["started"] > 20  # the busy legitimate prefix really crossed the guard's minimum
