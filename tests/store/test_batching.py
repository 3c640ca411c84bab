"""The script batcher against a real Redis: calls of one loop pass share pipelines of up to FLUSH_AT calls,
a full batch leaves at once, and each call gets its own answer or its own error."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from smsgw.store.batching import EARLY_IN_FLIGHT, FLUSH_AT, Call, ScriptBatcher

ECHO = """
if ARGV[1] == 'bad' then return redis.error_reply('ERR refused ' .. KEYS[1]) end
redis.call('INCR', KEYS[1])
return ARGV[1]
"""


class Counting(ScriptBatcher):
    """Records the size of every pipeline it sends."""

    sizes: list[int]

    async def _send(self, batch: list[Call]) -> None:
        self.sizes.append(len(batch))
        await super()._send(batch)


def batcher(redis: Redis, **options: Any) -> Counting:
    made = Counting(redis, redis.register_script(ECHO), **options)
    made.sizes = []
    return made


async def test_calls_of_one_pass_leave_in_full_batches_as_they_fill(redis: Redis) -> None:
    calls = 2 * FLUSH_AT + 5
    echo = batcher(redis)
    answers = await asyncio.gather(*(echo(["n"], [str(i)]) for i in range(calls)))
    assert [answer for answer, _ in answers] == [str(i) for i in range(calls)]
    # One pipeline per pass would have been one batch of all of them, held until the last call was made.
    assert echo.sizes == [FLUSH_AT, FLUSH_AT, 5]
    assert int(await redis.get("n")) == calls


async def test_a_full_batch_leaves_before_the_pass_ends(redis: Redis) -> None:
    echo = batcher(redis, flush_at=3)
    calls = [asyncio.ensure_future(echo(["n"], [str(i)])) for i in range(4)]
    await asyncio.sleep(0)  # a pass: each call ran up to its await; the third made a full batch
    await asyncio.sleep(0)  # the next pass: that batch's send began; the fourth call's flush made its task
    # The first three left as soon as the third was made; the fourth left at the end of its pass, alone. One
    # batch per pass would have sent nothing yet, then all four together.
    assert echo.sizes == [3]
    await asyncio.gather(*calls)
    assert echo.sizes == [3, 1]


async def test_early_batches_are_capped_so_a_crowd_does_not_take_a_connection_per_batch(redis: Redis) -> None:
    echo = batcher(redis, flush_at=2)
    calls = 2 * EARLY_IN_FLIGHT + 4
    answers = await asyncio.gather(*(echo(["n"], [str(i)]) for i in range(calls)))
    assert [answer for answer, _ in answers] == [str(i) for i in range(calls)]
    # EARLY_IN_FLIGHT full batches left early (all still on their way in this pass); the rest went as one.
    assert echo.sizes == [2] * EARLY_IN_FLIGHT + [4]


async def test_a_lone_call_leaves_at_the_end_of_its_pass(redis: Redis) -> None:
    echo = batcher(redis)
    assert await echo(["n"], ["one"]) == ("one", None)
    assert echo.sizes == [1]


async def test_each_call_keeps_its_own_error(redis: Redis) -> None:
    echo = batcher(redis, flush_at=4)
    args = ["a", "bad", "c", "d", "bad", "f"]
    answers = await asyncio.gather(*(echo([f"k:{a}"], [a]) for a in args), return_exceptions=True)
    for arg, answer in zip(args, answers, strict=True):
        if arg == "bad":
            assert isinstance(answer, ResponseError)
            assert "refused" in str(answer)
        else:
            assert answer == (arg, None)
    assert echo.sizes == [4, 2]
