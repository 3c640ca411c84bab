"""Per-client request limits (``rate`` in SMSGW_CLIENTS), shared by every gateway replica through Redis."""

from __future__ import annotations

import math

from smsgw import keys
from smsgw.errors import TooManyRequests
from smsgw.gateway.context import Gateway
from smsgw.settings import Client

__all__ = ["enforce_client_rate"]


async def enforce_client_rate(gw: Gateway, client: Client) -> None:
    """429 with Retry-After when the client is over its rate; a burst of one second's worth is allowed."""
    if client.rate is None:
        return
    burst = max(1, math.ceil(client.rate))
    allowed, wait_ms = await gw.scripts.client_rate(
        keys=[keys.client_rate(client.name)], args=[client.rate, burst]
    )
    if int(allowed) == 1:
        return
    gw.metrics.rate_limited.labels(client.name).inc()
    raise TooManyRequests(
        f"client {client.name} is limited to {client.rate:g} requests per second",
        retry_after=math.ceil(int(wait_ms) / 1000),
    )
