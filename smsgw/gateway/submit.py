"""Turn a send command into a stored message: one store call decides the client's rate, the Idempotency-Key
and the write. Shared by ``POST /v1/messages``, the uBill facade, dead-letter replay and verifications, so all
of them queue, prioritise, retry and track work the same way.
"""

from __future__ import annotations

import structlog

from smsgw.clock import now_ms
from smsgw.command import SendCommand
from smsgw.errors import Conflict, ValidationFailed
from smsgw.gateway.context import Gateway
from smsgw.gateway.ratelimit import client_limit, too_many
from smsgw.phones import mask
from smsgw.settings import Client
from smsgw.store.messages import Accepted, Exists, Idempotency, Limited, Mismatch, Replayed

__all__ = ["MISMATCH", "submit"]

log = structlog.get_logger(__name__)
MISMATCH = [{"field": "Idempotency-Key", "message": "already used with a different request body"}]


async def submit(
    gw: Gateway,
    client: Client,
    command: SendCommand,
    *,
    idempotency: Idempotency | None = None,
    facade: bool = False,
    facade_retry: str | None = None,
    message_id: str | None = None,
    rate: bool = True,
) -> Accepted | Replayed:
    """Store ``command`` for ``client``; 429, 422 (key reused with another body) and 409 (fixed id taken) are
    raised as problems; Redis outages surface as ``StoreUnavailable`` / ``StoreOutcomeUnknown``."""
    settings = gw.settings
    message = command.message(
        client.name, now_ms=now_ms(), batch_size=settings.batch_size, message_id=message_id
    )
    ttl_s = max(1, (message.expires_ms - message.created_ms) // 1000) + settings.message_retention
    outcome = await gw.store.messages.accept(
        message,
        ttl_s=ttl_s,
        limit=client_limit(client) if rate else None,
        idempotency=idempotency,
        facade=facade,
        facade_retry=facade_retry,
        check_exists=message_id is not None,
    )
    if isinstance(outcome, Limited):
        raise too_many(gw, client, outcome.retry_after_ms)
    if isinstance(outcome, Mismatch):
        raise ValidationFailed(MISMATCH)
    if isinstance(outcome, Exists):
        raise Conflict(f"message {message.id} already exists")
    if isinstance(outcome, Replayed):
        gw.metrics.idempotent_replays.labels(client.name).inc()
        return outcome
    count = message.recipient_count
    gw.metrics.accepted.labels(message.lane, client.name).inc(count)
    # debug: at thousands of 202s per second an info line per message would cost a tenth of the CPU;
    # the worker logs every dispatch, and metrics count acceptances.
    log.debug(
        "message.accepted",
        message_id=message.id,
        client=client.name,
        lane=message.lane,
        recipients=count,
        units=len(message.units),
        first=mask(message.units[0][0]),
        send_at=message.send_at_ms,
    )
    return outcome
