"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import re

from smsgw.devtools.redis import EmbeddedRedis
from tests.gateway.conftest import call, problem
from tests.harness import Stack


async def test_healthz(stack: Stack) -> None:
    answer = await call(stack, "GET", "/healthz", who=None)
    assert answer.status == 200
    assert answer.json() == {"status": "ok"}


async def test_readyz_reports_durability(stack: Stack) -> None:
    answer = await call(stack, "GET", "/readyz", who=None)
    assert answer.status == 200
    body = answer.json()
    assert body["status"] == "ready"
    assert body["redis"] == "ok"
    assert body["durability"] == {"appendonly": "yes", "appendfsync": "always", "durable": True}
    assert "warning" not in body


async def test_readyz_warns_when_redis_is_not_durable(own_redis: EmbeddedRedis) -> None:
    async with Stack(own_redis.url, worker=False) as stack:
        async with stack.http.get(f"{stack.url}/readyz") as response:
            assert response.status == 200
        from redis.asyncio import Redis  # noqa: PLC0415

        client = Redis.from_url(own_redis.url, decode_responses=True)
        try:
            await client.config_set("appendfsync", "everysec")
        finally:
            await client.aclose()
    async with Stack(own_redis.url, worker=False) as stack:
        body = (await call(stack, "GET", "/readyz", who=None)).json()
        assert body["durability"] == {"appendonly": "yes", "appendfsync": "everysec", "durable": False}
        assert "appendfsync always" in body["warning"]


async def test_readyz_is_503_without_redis(own_redis: EmbeddedRedis) -> None:
    async with Stack(own_redis.url, worker=False) as stack:
        own_redis.stop()
        problem(await call(stack, "GET", "/readyz", who=None), 503, "unavailable")
        assert (await call(stack, "GET", "/healthz", who=None)).status == 200
        own_redis.start()
        assert (await call(stack, "GET", "/readyz", who=None)).status == 200


async def test_metrics_are_prometheus_text(stack: Stack) -> None:
    sent = await call(stack, "POST", "/v1/messages", json={"to": ["995511194242"], "text": "hi"})
    assert sent.status == 202
    problem(await call(stack, "GET", "/v1/messages/msg_nope"), 404)
    answer = await call(stack, "GET", "/metrics", who=None)
    assert answer.status == 200
    assert answer.content_type == "text/plain"
    assert "version=0.0.4" in answer.headers["Content-Type"]
    text = answer.text
    assert "# TYPE smsgw_http_requests_total counter" in text
    line = re.compile(r"^smsgw_http_requests_total\{(?P<labels>.*)\} (?P<value>[0-9.e+]+)$", re.M)
    samples = {m["labels"]: float(m["value"]) for m in line.finditer(text)}
    assert any(
        'route="/v1/messages"' in k
        and 'status="202"' in k
        and 'client="auth-service"' in k
        and 'method="POST"' in k
        and v == 1.0
        for k, v in samples.items()
    ), samples
    assert any('route="/v1/messages/{id}"' in k and 'status="404"' in k for k in samples), samples
    assert "smsgw_recipients_accepted_total" in text
    assert "smsgw_http_request_duration_seconds_bucket" in text
    for raw in text.splitlines():
        assert raw.startswith("#") or re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$", raw), raw


async def test_request_id_is_echoed_or_made(stack: Stack) -> None:
    made = await call(stack, "GET", "/healthz", who=None)
    assert re.fullmatch(r"[A-Za-z0-9_-]{8}-[0-9a-f]+", made.headers["X-Request-ID"])
    echoed = await call(stack, "GET", "/healthz", who=None, headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    unsafe = await call(stack, "GET", "/healthz", who=None, headers={"X-Request-ID": "a b\tc"})
    assert unsafe.headers["X-Request-ID"] != "a b\tc"
