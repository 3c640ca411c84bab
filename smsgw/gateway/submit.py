"""Turn a validated send into a durable message: one Lua call writes the hash, the jobs and the lane entries.

Shared by ``POST /v1/messages``, the uBill facade and dead-letter replay, so all three queue, prioritise,
retry and track work the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import structlog

from smsgw import keys
from smsgw.clock import now_ms
from smsgw.errors import Conflict, ServiceUnavailable
from smsgw.gateway.context import Gateway
from smsgw.gateway.validation import SendRequest
from smsgw.phones import mask
from smsgw.records import NewMessage, new_message_id
from smsgw.segments import count_segments
from smsgw.settings import Client
from smsgw.ubill import numbers_per_call

__all__ = ["Submitted", "submit"]

log = structlog.get_logger(__name__)
DEADLINE_MARGIN_MS = 100  # covers the answer's trip back and clock drift between gateway and Redis (NTP)


@dataclass(frozen=True)
class Submitted:
    message: NewMessage
    fields: dict[str, str]
    facade_id: int | None


def build_message(gw: Gateway, client: Client, send: SendRequest, message_id: str | None) -> NewMessage:
    now = now_ms()
    segments, encoding = count_segments(send.text)
    settings = gw.settings
    per_call = (
        1
        if len(send.numbers) == 1
        else numbers_per_call(
            settings.ubill_base_url,
            send.text,
            send.brand_id,
            send.lane == "otp",
            send.stop_list,
            settings.ubill_max_url_length,
            settings.batch_size,
        )
    )
    units = tuple(tuple(send.numbers[i : i + per_call]) for i in range(0, len(send.numbers), per_call))
    start = send.send_at_ms if send.send_at_ms is not None else now
    return NewMessage(
        id=message_id or new_message_id(),
        client=client.name,
        lane=send.lane,
        brand_id=send.brand_id,
        text=send.sealed_text or send.text,
        reference=send.reference,
        segments=segments,
        encoding=encoding,
        created_ms=now,
        send_at_ms=send.send_at_ms,
        expires_ms=start + send.validity_s * 1000,
        stop_list=send.stop_list,
        units=units,
    )


async def submit(
    gw: Gateway,
    client: Client,
    send: SendRequest,
    *,
    message_id: str | None = None,
    idempotency: tuple[str, str] | None = None,
    facade: bool = False,
) -> Submitted:
    """Write the message; ``idempotency`` is (key, finished record) stored in the same script."""
    message = build_message(gw, client, send, message_id)
    fields = message.fields()
    ttl_s = max(1, (message.expires_ms - message.created_ms) // 1000) + gw.settings.message_retention
    # Past this moment (by Redis's clock) the script writes nothing: we will have answered 503 by then.
    deadline = now_ms() + int(gw.settings.redis_timeout * 1000) - DEADLINE_MARGIN_MS
    flat = [item for pair in fields.items() for item in pair]
    payload = orjson.dumps({"f": flat, "j": message.jobs()})
    idem_record = idempotency[1] if idempotency else ""
    args: list[str | int | bytes] = [ttl_s, deadline, idem_record, message.id, payload]
    script_keys = [
        keys.message(message.id),
        keys.lane_queue(message.lane),
        keys.wake(message.lane),
        idempotency[0] if idempotency else "",
        keys.FACADE_SEQ if facade else "",
    ]
    written = await gw.accept(script_keys, args)
    if int(written[0]) == -1:
        raise ServiceUnavailable("Redis answered too late; nothing was accepted, retry later")
    if int(written[0]) == 0:
        raise Conflict(f"message {message.id} already exists")
    count = sum(len(unit) for unit in message.units)
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
    facade_id = int(written[1]) if facade and written[1] else None
    return Submitted(message, fields, facade_id)
