"""``Idempotency-Key`` on ``POST /v1/messages``: per client, 24 h, keyed on the canonical JSON of the body.

A key is first reserved (``pending``); the accept script turns it into a finished record in the same atomic
write as the message, so a replay can never see a message without its record or the reverse.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from smsgw import keys
from smsgw.errors import BadRequest, Conflict, NotFound, ValidationFailed
from smsgw.gateway.context import GATEWAY, MESSAGE_ID, client_of
from smsgw.gateway.jsonio import json_response
from smsgw.records import resource
from smsgw.redisdb import REDIS_ERRORS, hash_fields

__all__ = ["body_hash", "idempotent"]

MAX_KEY_LENGTH = 255


def body_hash(body: Any) -> str:
    """The same JSON value hashes the same whatever its formatting or key order."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")


async def idempotent(
    request: web.Request,
    key: str,
    body: Any,
    message_id: str,
    run: Callable[[tuple[str, str] | None], Awaitable[web.Response]],
) -> web.Response:
    """Run the send once per (client, key): replay the original, refuse a different body or a race."""
    _check_key(key)
    gw = request.app[GATEWAY]
    client = client_of(request)
    digest = body_hash(body)
    record_key = keys.idempotency(client.name, hashlib.sha256(key.encode()).hexdigest())
    state = await gw.scripts.idempotency(
        keys=[record_key], args=["begin", digest, keys.IDEMPOTENCY_PENDING_TTL]
    )
    if state[0] == "inflight":
        raise Conflict("a request with this Idempotency-Key is still being processed")
    if state[0] == "mismatch":
        raise ValidationFailed(
            [{"field": "Idempotency-Key", "message": "already used with a different request body"}],
        )
    if state[0] == "replay":
        gw.metrics.idempotent_replays.labels(client.name).inc()
        fields = await hash_fields(gw.redis, keys.message(state[1]))
        if not fields:
            raise NotFound(f"message {state[1]} of this Idempotency-Key is no longer kept")
        request[MESSAGE_ID] = state[1]
        return json_response(resource(state[1], fields), status=int(state[2]))
    try:
        return await run((record_key, f"done|{digest}|{message_id}|202"))
    except BaseException:
        with contextlib.suppress(*REDIS_ERRORS):
            await gw.scripts.idempotency(keys=[record_key], args=["abort", digest, 0])
        raise
