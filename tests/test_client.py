"""``smsgw.client`` against the real gateway, worker, sandbox and Redis (``Stack``).

The retry rules for sends without an idempotency key are checked against a small scripted aiohttp server
(``Scripted``) instead: it answers each attempt as told (an ``/outcome-unknown`` 503, a stall, a cut
connection, a proxy's 503), which the real gateway cannot be made to do on cue.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from redis.asyncio import Redis

from smsgw.client import (
    BadRequestError,
    ConflictError,
    Event,
    FieldError,
    ForbiddenError,
    Message,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ServiceUnavailableError,
    SmsGatewayClient,
    SmsGatewayClientError,
    TransportError,
    UnauthorizedError,
    ValidationError,
    _SseParser,
)
from smsgw.devtools.redis import EmbeddedRedis
from smsgw.store import keys
from tests.harness import TOKENS, Stack, serve

A, B = "995511194242", "995511194243"
PROBLEMS = "https://sms-gateway.internal/problems/"


def client(stack: Stack, who: str = "auth", *, retries: int = 2) -> SmsGatewayClient:
    return SmsGatewayClient(stack.url, TOKENS[who], retries=retries)


async def wait_final(gateway: SmsGatewayClient, message_id: str) -> Message:
    deadline = time.monotonic() + 15
    while True:
        message = await gateway.get(message_id)
        if message.is_final:
            return message
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.05)


async def take(events: AsyncIterator[Event], count: int, within: float = 10.0) -> list[Event]:
    async with asyncio.timeout(within):
        return [await anext(events) for _ in range(count)]


async def test_send_get_delivered(redis_url: str) -> None:
    async with Stack(redis_url) as stack, client(stack) as gateway:
        sent = await gateway.send(
            ["+995 511 19-42-42", "995511194243", "995511194242"], "Your code is 1234", reference="order-7"
        )
        assert sent.id.startswith("msg_")
        assert sent.status == "queued"
        assert sent.recipients is not None
        assert [r.number for r in sent.recipients] == [A, B]  # normalised, de-duplicated
        assert (sent.segments, sent.encoding, sent.brand_id, sent.reference) == (1, "GSM-7", 1, "order-7")
        assert sent.created_at.tzinfo is not None
        assert sent.expires_at - sent.created_at == timedelta(days=1)
        done = await wait_final(gateway, sent.id)
        assert done.status == "delivered"
        assert dict(done.counts) == {"delivered": 2}
        assert done.recipients is not None
        assert all(r.provider_sms_id for r in done.recipients)
        assert all(r.updated_at >= sent.created_at for r in done.recipients)


async def test_large_messages_without_recipients_and_paged(redis_url: str) -> None:
    """``minimal`` answers carry counts only; ``recipients()`` pages through every number, by status too."""
    to = [f"99559{1_500_000 + i:07d}" for i in range(2_500)]
    async with Stack(redis_url, worker=False) as stack, client(stack) as gateway:
        sent = await gateway.send(to, "Big", minimal=True)
        assert sent.recipients is None and dict(sent.counts) == {"queued": 2_500}
        assert not sent.is_final
        again = await gateway.get(sent.id, minimal=True)
        assert again.recipients is None and dict(again.counts) == {"queued": 2_500}
        numbers = [r.number async for r in gateway.recipients(sent.id, page_size=1_000)]
        assert numbers == to
        assert [r async for r in gateway.recipients(sent.id, status="delivered")] == []


async def test_cancel_a_scheduled_message(redis_url: str) -> None:
    # No worker: cancelling happens in the gateway, and nothing may reach the sandbox either way.
    async with Stack(redis_url, worker=False) as stack, client(stack) as gateway:
        at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        scheduled = await gateway.send(A, "later", send_at=at, validity=timedelta(minutes=10))
        assert scheduled.status == "scheduled"
        assert scheduled.send_at == at
        assert scheduled.expires_at == at + timedelta(minutes=10)
        cancelled = await gateway.cancel(scheduled.id)
        assert cancelled.status == "cancelled"
        assert cancelled.is_final
        with pytest.raises(ConflictError) as conflict:
            await gateway.cancel(scheduled.id)
        assert conflict.value.status == 409
        assert conflict.value.type == PROBLEMS + "conflict"
        assert (await gateway.get(scheduled.id)).status == "cancelled"
        assert await stack.sandbox_sends() == []


async def test_events_stream_yields_status_events_and_resumes(redis_url: str) -> None:
    async with Stack(redis_url) as stack, client(stack) as gateway:
        first = await gateway.send(A, "one", reference="ref-1")
        await wait_final(gateway, first.id)
        async with aclosing(gateway.events(last_event_id="0")) as stream:
            replayed = await take(stream, 4)
        assert [e.status for e in replayed] == ["dispatching", "submitted", "sent", "delivered"]
        assert {(e.message_id, e.number, e.reference, e.client) for e in replayed} == {
            (first.id, A, "ref-1", "auth-service")
        }
        assert replayed[-1].provider_status_id == 1
        recipients = (await gateway.get(first.id)).recipients
        assert recipients is not None
        assert replayed[-1].provider_sms_id == recipients[0].provider_sms_id
        replayed_ids = [e.id for e in replayed]
        assert replayed_ids == sorted(replayed_ids, key=_stream_order)
        assert len(set(replayed_ids)) == 4

        # Resume after the second event: exactly the rest, then new events live as they happen.
        async with aclosing(gateway.events(last_event_id=replayed[1].id)) as stream:
            rest = await take(stream, 2)
            assert [e.id for e in rest] == replayed_ids[2:]
            second = await gateway.send(B, "two")
            live = await take(stream, 4)
        assert {e.message_id for e in live} == {second.id}
        assert [e.status for e in live] == ["dispatching", "submitted", "sent", "delivered"]


class Cutter:
    """A TCP proxy in front of the gateway whose open connections the test can cut, like a flaky network."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.passed = bytearray()  # everything forwarded to the client side, for the test to wait on
        self.forwarded = asyncio.Event()
        self.open = asyncio.Event()  # cleared: new connections wait (the network is down)
        self.open.set()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        self.cut()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def cut(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def seen(self, data: bytes, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while data not in self.passed:
                self.forwarded.clear()
                await self.forwarded.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.open.wait()
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, upstream_writer]
        for source, sink, seen in ((reader, upstream_writer, False), (upstream_reader, writer, True)):
            task = asyncio.create_task(self._pipe(source, sink, seen))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, seen: bool) -> None:
        try:
            while data := await source.read(65536):
                if seen:
                    self.passed += data
                    self.forwarded.set()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()


async def test_events_stream_reconnects_after_a_cut_and_misses_nothing(redis_url: str) -> None:
    async with Stack(redis_url, worker=False) as stack:
        cutter = Cutter(int(stack.url.rsplit(":", 1)[1]))
        async with cutter as url, SmsGatewayClient(url, TOKENS["auth"]) as gateway:
            later = datetime.now(UTC) + timedelta(hours=1)
            one = await gateway.send(A, "one", send_at=later)
            await gateway.cancel(one.id)
            async with aclosing(gateway.events(last_event_id="0")) as stream:
                before = await take(stream, 1)
                cutter.cut()  # the stream's connection is gone; the next events happen while it is down
                two = await gateway.send([A, B], "two", send_at=later)
                await gateway.cancel(two.id)
                after = await take(stream, 2)
        assert [(e.message_id, e.status) for e in before] == [(one.id, "cancelled")]
        assert [(e.message_id, e.number) for e in after] == [
            (two.id, A),
            (two.id, B),
        ]  # nothing lost or repeated
        assert _stream_order(after[0].id) > _stream_order(before[0].id)


async def test_events_resume_from_the_announced_position_after_a_cut_before_the_first_event(
    redis_url: str,
) -> None:
    """Connected without an id, cut before any event: the events of the gap still all arrive."""
    async with Stack(redis_url, worker=False) as stack:
        cutter = Cutter(int(stack.url.rsplit(":", 1)[1]))
        async with (
            cutter as url,
            SmsGatewayClient(url, TOKENS["auth"]) as listener,
            client(stack) as sender,
        ):
            later = datetime.now(UTC) + timedelta(hours=1)
            before = await sender.send(A, "before", send_at=later)
            await sender.cancel(before.id)  # an event from before the stream: never to be delivered
            async with aclosing(listener.events()) as stream:
                first = asyncio.ensure_future(anext(stream))
                await cutter.seen(b"\nid: ")  # the stream announced its position...
                await asyncio.sleep(0.3)  # ...and the client has read it
                cutter.open.clear()
                cutter.cut()  # the connection drops before any event; reconnects wait meanwhile
                gap = await sender.send([A, B], "during the gap", send_at=later)
                await sender.cancel(gap.id)
                after = await sender.send(A, "after", send_at=later)
                await sender.cancel(after.id)
                await asyncio.sleep(0.5)  # the client has tried to reconnect by now
                cutter.open.set()
                got = [await asyncio.wait_for(first, 10), *await take(stream, 2)]
        assert [(e.message_id, e.number) for e in got] == [(gap.id, A), (gap.id, B), (after.id, A)]


def _stream_order(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


async def test_errors_map_to_exceptions_with_problem_details(redis_url: str) -> None:
    async with Stack(redis_url, worker=False) as stack, client(stack) as gateway:
        with pytest.raises(ValidationError) as invalid:
            await gateway.send(["995511194242", "12", "+1 202 555 0143"], "   ", reference="r" * 129)
        error = invalid.value
        assert (error.status, error.type, error.title) == (
            422,
            PROBLEMS + "validation",
            "The request is not valid",
        )
        fields = {e.field for e in error.errors}
        assert fields == {"text", "reference", "to[1]", "to[2]"}
        assert all(isinstance(e, FieldError) and e.message for e in error.errors)
        assert "text" in error.detail

        with pytest.raises(NotFoundError) as missing:
            await gateway.get("msg_nope")
        assert (missing.value.status, missing.value.type) == (404, PROBLEMS + "not-found")
        with pytest.raises(NotFoundError):
            await gateway.cancel("../messages")  # one path segment: never another route

        with pytest.raises(ForbiddenError) as forbidden:
            await gateway.send(A, "hi", brand_id=9)
        assert forbidden.value.status == 403
        assert "brand 9" in forbidden.value.detail

        with pytest.raises(BadRequestError) as bad:
            async with aclosing(gateway.events(last_event_id="not-an-id", reconnect=False)) as stream:
                await anext(stream)
        assert bad.value.status == 400

        async with SmsGatewayClient(stack.url, "not-a-token") as stranger:
            with pytest.raises(UnauthorizedError) as unauthorized:
                await stranger.get("msg_x")
        assert (unauthorized.value.status, unauthorized.value.type) == (401, PROBLEMS + "unauthorized")
        assert isinstance(unauthorized.value, SmsGatewayClientError)

        with pytest.raises(ValueError, match="timezone-aware"):
            await gateway.send(A, "hi", send_at=datetime(2030, 1, 1))


async def test_idempotency_key_replays_the_original_message(redis_url: str) -> None:
    async with Stack(redis_url, worker=False) as stack, client(stack) as gateway:
        first = await gateway.send(A, "once", idempotency_key="order-7-sms")
        again = await gateway.send(A, "once", idempotency_key="order-7-sms")
        assert again.id == first.id
        with pytest.raises(ValidationError) as changed:
            await gateway.send(A, "twice", idempotency_key="order-7-sms")
        assert changed.value.errors == (
            FieldError("Idempotency-Key", "already used with a different request body"),
        )
        other = await gateway.send(A, "once")  # a fresh automatic key: a new message
        assert other.id != first.id


async def test_rate_limit_is_waited_out_or_raised_with_retry_after(redis: Redis, redis_url: str) -> None:
    async with Stack(redis_url, worker=False) as stack:
        accepted: list[Message] = []
        async with client(stack, "limited", retries=0) as impatient:
            with pytest.raises(RateLimitedError) as limited:
                for _ in range(5):  # the limited client may send 2 per second
                    accepted.append(await impatient.send(A, "hi"))
            assert limited.value.status == 429
            assert limited.value.retry_after is not None
            assert limited.value.retry_after >= 1
        async with client(stack, "limited", retries=3) as patient:
            accepted += [await patient.send(A, f"hi {i}") for i in range(4)]  # each waits its turn
        assert len({m.id for m in accepted}) == len(accepted)
        stored = [k async for k in redis.scan_iter(match=keys.message("*"))]
        assert len(stored) == len(accepted)  # a refused attempt and its retry never made two messages


async def test_redis_down_is_503_with_retry_after_and_transport_errors_are_wrapped(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        async with Stack(server.url, worker=False) as stack, client(stack, retries=1) as gateway:
            server.stop()
            started = time.monotonic()
            with pytest.raises(ServiceUnavailableError) as unavailable:
                await gateway.send(A, "hi")
            assert unavailable.value.status == 503
            assert unavailable.value.retry_after == 1
            assert time.monotonic() - started >= 1  # it waited Retry-After once before giving up
    finally:
        server.stop()
    async with SmsGatewayClient("http://127.0.0.1:9", TOKENS["auth"], retries=0) as nowhere:
        with pytest.raises(TransportError):
            await nowhere.get("msg_x")


async def test_client_must_be_opened_once() -> None:
    gateway = SmsGatewayClient("http://127.0.0.1:9", "tok-never-shown")
    with pytest.raises(RuntimeError, match="inside 'async with"):
        await gateway.get("msg_x")
    async with gateway:
        pass
    await gateway.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="only once"):
        await gateway.__aenter__()
    assert "tok-never-shown" not in repr(gateway)


def test_sse_parser_follows_the_event_stream_rules() -> None:
    parser = _SseParser()
    lines = [
        ": connected",
        "",
        "id: 1-0",
        "event: status",
        'data: {"a":',
        "data: 1}",
        "",
        ": keep-alive",
        "",
        "id: 2-0",
        "",
        "data:x",
        "",
    ]
    frames = [frame for line in lines if (frame := parser.feed(line)) is not None]
    assert frames == [("1-0", "status", '{"a":\n1}'), ("2-0", "message", "x")]
    assert parser.last_id == "2-0"
    # A frame with an id and no data (the gateway's position on connect) sets the id, dispatches nothing.
    assert [parser.feed(line) for line in ("id: 7-3", "")] == [None, None]
    assert parser.last_id == "7-3"


# --- sends without an idempotency key: resent only after an answer that proves nothing was stored ---------

MESSAGE = {
    "id": "msg_0123456789abcdef01234567",
    "status": "queued",
    "counts": {"queued": 1},
    "priority": "transactional",
    "brand_id": 1,
    "reference": None,
    "segments": 1,
    "encoding": "GSM-7",
    "created_at": "2026-11-25T09:00:00.000Z",
    "send_at": None,
    "expires_at": "2026-11-26T09:00:00.000Z",
    "recipients": [
        {
            "number": A,
            "status": "queued",
            "provider_sms_id": None,
            "updated_at": "2026-11-25T09:00:00.000Z",
            "error": None,
        }
    ],
}


def _problem(status: int, slug: str, retry_after: int | None = 1, **extra: object) -> web.Response:
    body = {"type": PROBLEMS + slug, "title": slug, "status": status, "detail": slug, **extra}
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return web.json_response(body, status=status, content_type="application/problem+json", headers=headers)


class Scripted:
    """An aiohttp server that answers the n-th POST /v1/messages as ``script[n]`` says, and records them."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.keys: list[str | None] = []  # the Idempotency-Key of every POST that arrived
        self.released = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._send)
        return app

    async def _send(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.keys.append(request.headers.get("Idempotency-Key"))
        step = self.script[min(len(self.keys), len(self.script)) - 1]
        if step == "accept":
            return web.json_response(MESSAGE, status=202)
        if step == "unknown":
            return _problem(503, "outcome-unknown")
        if step == "unavailable":  # an accept that provably stored nothing (never reached Redis, found out)
            return _problem(503, "unavailable", nothing_changed=True)
        if step == "maybe":  # the gateway's 503 for a write whose Redis reply timed out: it may have happened
            return _problem(503, "unavailable")
        if step == "limited":
            return _problem(429, "rate-limited")
        if step == "proxy":  # a proxy's own 503: no problem details, the request may have gone through
            return web.Response(status=503, text="upstream connect error or disconnect/reset before headers")
        if step == "cut":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=202)
        assert step == "stall", step
        await self.released.wait()  # longer than the client's timeout
        return web.json_response(MESSAGE, status=202)


async def _scripted_send(
    script: list[str], *, keys: bool, retries: int = 3
) -> tuple[Message | SmsGatewayClientError, Scripted]:
    scripted = Scripted(script)
    runner, url = await serve(scripted.app())
    try:
        async with SmsGatewayClient(
            url, TOKENS["auth"], timeout=0.5, retries=retries, idempotency_keys=keys
        ) as gateway:
            try:
                outcome: Message | SmsGatewayClientError = await gateway.send(A, "hi")
            except SmsGatewayClientError as exc:
                outcome = exc
        await asyncio.sleep(0.3)  # a resend, had there been one, has arrived by now
    finally:
        scripted.released.set()
        await runner.cleanup()
    return outcome, scripted


@pytest.mark.parametrize(
    ("script", "raised"),
    [
        (["unknown", "accept"], OutcomeUnknownError),
        (["stall", "accept"], TransportError),
        (["cut", "accept"], TransportError),
        (["proxy", "accept"], ServiceUnavailableError),
        (["maybe", "accept"], ServiceUnavailableError),
    ],
)
async def test_a_send_without_key_is_never_resent_after_an_answer_that_may_mean_stored(
    script: list[str], raised: type[SmsGatewayClientError]
) -> None:
    outcome, scripted = await _scripted_send(script, keys=False)
    assert type(outcome) is raised, outcome
    assert scripted.keys == [None]  # one POST: a second could have made a second message


@pytest.mark.parametrize("first", ["unavailable", "limited"])
async def test_a_send_without_key_is_resent_after_an_answer_that_proves_nothing_was_stored(
    first: str,
) -> None:
    outcome, scripted = await _scripted_send([first, "accept"], keys=False)
    assert isinstance(outcome, Message), outcome
    assert scripted.keys == [None, None]


@pytest.mark.parametrize("first", ["unknown", "stall", "cut", "proxy", "unavailable", "limited"])
async def test_a_send_with_a_key_is_resent_with_the_same_key(first: str) -> None:
    outcome, scripted = await _scripted_send([first, "accept"], keys=True)
    assert isinstance(outcome, Message), outcome
    assert len(scripted.keys) == 2
    assert scripted.keys[0] is not None and scripted.keys[0] == scripted.keys[1]


async def test_outcome_unknown_reaches_the_caller_as_its_own_error_once_retries_run_out() -> None:
    outcome, scripted = await _scripted_send(["unknown"], keys=True, retries=1)
    assert isinstance(outcome, OutcomeUnknownError)
    assert isinstance(outcome, ServiceUnavailableError)  # code that catches 503s still catches it
    assert (outcome.status, outcome.type, outcome.retry_after) == (503, PROBLEMS + "outcome-unknown", 1)
    assert "same idempotency key" in (OutcomeUnknownError.__doc__ or "").replace("``", "").replace("_", " ")
    assert len(scripted.keys) == 2 and len(set(scripted.keys)) == 1


async def test_a_send_without_key_is_resent_after_a_refused_connection() -> None:
    """Nothing listened yet: the request never left, so repeating it is safe even without a key."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    scripted = Scripted(["accept"])
    runner = web.AppRunner(scripted.app(), access_log=None)
    await runner.setup()

    async def listen_soon() -> None:
        await asyncio.sleep(0.1)
        await web.TCPSite(runner, "127.0.0.1", port).start()

    starting = asyncio.ensure_future(listen_soon())
    try:
        async with SmsGatewayClient(
            f"http://127.0.0.1:{port}", TOKENS["auth"], retries=4, idempotency_keys=False
        ) as gateway:
            message = await gateway.send(A, "hi")
    finally:
        await starting
        await runner.cleanup()
    assert message.id == MESSAGE["id"]
    assert scripted.keys == [None]
