"""What every gateway handler reaches through ``request.app[GATEWAY]``: settings, Redis, scripts, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from redis.asyncio import Redis

from smsgw.batching import ScriptBatcher
from smsgw.gateway.auth import Authenticator
from smsgw.lua import Scripts
from smsgw.metrics import GatewayMetrics
from smsgw.redisdb import Durability
from smsgw.settings import Client, Settings

__all__ = ["CLIENT", "GATEWAY", "MESSAGE_ID", "REDIS_ERROR", "REQUEST_ID", "Gateway", "client_of"]


@dataclass
class Gateway:
    settings: Settings
    redis: Redis
    blocking: Redis  # its own pool: SSE streams park in XREAD BLOCK without starving the API
    scripts: Scripts
    metrics: GatewayMetrics
    auth: Authenticator
    accept: ScriptBatcher  # the accept script, batched: concurrent POSTs share one pipeline
    durability: Durability | None = field(default=None)


GATEWAY = web.AppKey("gateway", Gateway)
CLIENT = web.RequestKey("client", Client)
REQUEST_ID = web.RequestKey("request_id", str)
MESSAGE_ID = web.RequestKey("message_id", str)
REDIS_ERROR = web.RequestKey("redis_error", bool)


def client_of(request: web.Request) -> Client:
    return request[CLIENT]
