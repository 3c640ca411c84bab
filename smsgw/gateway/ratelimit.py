"""Per-client request limits (``rate`` in SMSGW_CLIENTS), shared by every gateway replica through Redis.

Sends check the limit inside their accept script (one round trip); every other call checks it here.
"""

from __future__ import annotations

import math

from smsgw.errors import TooManyRequests
from smsgw.gateway.context import Gateway
from smsgw.settings import Client
from smsgw.store.messages import ClientLimit

__all__ = ["client_limit", "enforce_client_rate", "too_many"]


def client_limit(client: Client) -> ClientLimit | None:
    """The client's GCRA parameters: a burst of one second's worth is allowed."""
    if client.rate is None:
        return None
    return ClientLimit(client.name, client.rate, max(1, math.ceil(client.rate)))


def too_many(gw: Gateway, client: Client, retry_after_ms: int) -> TooManyRequests:
    gw.metrics.rate_limited.labels(client.name).inc()
    return TooManyRequests(
        f"client {client.name} is limited to {client.rate or 0:g} requests per second",
        retry_after=math.ceil(retry_after_ms / 1000),
    )


async def enforce_client_rate(gw: Gateway, client: Client) -> None:
    """429 with Retry-After when the client is over its rate."""
    limit = client_limit(client)
    if limit is None:
        return
    wait = await gw.store.messages.client_allowed(limit)
    if wait:
        raise too_many(gw, client, wait)
