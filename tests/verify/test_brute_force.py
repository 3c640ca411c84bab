"""A client guessing codes gets at most the attempts limit per verification and the per-number sends per
hour: 5 x 5 = 25 guesses an hour with the defaults, over real HTTP (every guess wrong: the worst case for
the guesser, the bound for us). The odds these bounds give are in the README and ``ops/bench/bruteforce.py``.
"""

from __future__ import annotations

from ops.bench.bruteforce import odds
from tests.harness import Stack
from tests.verify.support import check, code_sent_to, start, wrong

VICTIM = "995591000901"


async def test_a_guessing_client_gets_25_guesses_an_hour_with_the_defaults(redis_url: str) -> None:
    async with Stack(redis_url) as live:
        verifications = guesses = 0
        while True:
            answer = await start(live, {"to": VICTIM})
            if answer.status == 429:
                assert 3590 <= int(answer.headers["Retry-After"]) <= 3600
                break
            assert answer.status == 201
            verifications += 1
            code = await code_sent_to(live, VICTIM, verifications)
            status = "pending"
            while status == "pending":
                result = (await check(live, answer.json()["id"], wrong(code))).json()
                status = result["status"]
                guesses += 1
                assert result["attempts"] == guesses - 5 * (verifications - 1)
            assert status == "failed"
            # A failed verification takes no more guesses: the right code is refused too, and not counted.
            assert (await check(live, answer.json()["id"], code)).json() == {
                "status": "failed",
                "attempts": 5,
            }
        assert (verifications, guesses) == (5, 25)
    per_hour = odds(digits=6, guesses_per_verification=5, verifications=5)
    assert 2.49e-5 < per_hour < 2.51e-5
