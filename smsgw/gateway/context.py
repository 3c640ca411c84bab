"""What every gateway handler reaches through ``request.app[GATEWAY]``: settings, the store, metrics, auth."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from smsgw.gateway.auth import Authenticator
from smsgw.gateway.brands import BrandGate
from smsgw.metrics import GatewayMetrics
from smsgw.settings import Client, Settings
from smsgw.store import Store
from smsgw.store.connection import Durability

__all__ = [
    "CLIENT",
    "GATEWAY",
    "MESSAGE_ID",
    "REDIS_ERROR",
    "REQUEST_ID",
    "RETRY_ADVICE",
    "Gateway",
    "client_of",
]


@dataclass
class Gateway:
    settings: Settings
    store: Store
    blocking: Redis  # its own pool: event streams park in XREAD BLOCK without starving the API
    metrics: GatewayMetrics
    auth: Authenticator
    brands: BrandGate  # uBill's brand verdicts, in memory: the accept path asks Redis nothing for them
    durability: Durability | None = field(default=None)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)  # background work a request left behind

    @property
    def redis(self) -> Redis:
        return self.store.redis


GATEWAY = web.AppKey("gateway", Gateway)
CLIENT = web.RequestKey("client", Client)
REQUEST_ID = web.RequestKey("request_id", str)
MESSAGE_ID = web.RequestKey("message_id", str)
REDIS_ERROR = web.RequestKey("redis_error", bool)
# What a caller told "outcome unknown" may safely do next, where the Idempotency-Key rule does not apply.
RETRY_ADVICE = web.RequestKey("retry_advice", str)


def client_of(request: web.Request) -> Client:
    return request[CLIENT]
