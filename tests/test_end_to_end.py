"""From POST to delivered, through the real gateway, Redis, worker, sandbox and callback."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from tests.harness import Stack


async def test_post_to_delivered_with_events(redis: Redis, redis_url: str) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe("smsgw:events", "smsgw:events:auth-service")
    async with Stack(redis_url) as stack:
        created = await stack.send(
            {"to": ["+995 511 19-42-42", "995511194243"], "text": "Your code is 1234", "reference": "order-7"}
        )
        assert created["status"] == "queued"
        assert [r["number"] for r in created["recipients"]] == ["995511194242", "995511194243"]
        assert created["segments"] == 1 and created["encoding"] == "GSM-7"
        done = await stack.wait_status(created["id"], "delivered")
        assert done["status"] == "delivered"
        assert all(r["provider_sms_id"] for r in done["recipients"])
        sends = await stack.sandbox_sends()
        assert len(sends) == 1 and sorted(sends[0]["numbers"]) == ["995511194242", "995511194243"]
    seen: list[tuple[str, dict[str, object]]] = []
    deadline = asyncio.get_running_loop().time() + 1.0
    while asyncio.get_running_loop().time() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            seen.append((message["channel"], json.loads(message["data"])))
    await pubsub.aclose()
    statuses = [e["status"] for c, e in seen if c == "smsgw:events" and e["number"] == "995511194242"]
    assert statuses == ["dispatching", "submitted", "sent", "delivered"]
    event = next(e for c, e in seen if c == "smsgw:events:auth-service" and e["status"] == "delivered")
    assert set(event) == {
        "message_id",
        "client",
        "reference",
        "number",
        "status",
        "provider_sms_id",
        "provider_status_id",
        "occurred_at",
    }
    assert event["reference"] == "order-7" and event["provider_status_id"] == 1
    assert event["client"] == "auth-service" and event["message_id"] == created["id"]
    assert await redis.xlen("smsgw:stream:auth-service") == len([1 for c, _ in seen if c == "smsgw:events"])
