"""Redis connections (URL or Sentinel) with short timeouts, and the durability check the contract asks for.

Timeouts are short on purpose: when Redis is gone the gateway must answer 503 fast rather than hang, and the
worker must notice and wait for it to come back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar, cast

import orjson
import redis.exceptions
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel

from smsgw.settings import Settings

__all__ = [
    "REDIS_ERRORS",
    "Durability",
    "arq_pool",
    "connect",
    "durability",
    "hash_fields",
    "json_dumps",
    "json_loads",
]

REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    OSError,
)
R = TypeVar("R", bound=Redis)


def _options(settings: Settings, socket_timeout: float | None) -> dict[str, Any]:
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 30,
    }


def _client(settings: Settings, cls: type[R], socket_timeout: float | None, **extra: Any) -> R:
    options = {**_options(settings, socket_timeout), **extra}
    if settings.redis_password:
        options["password"] = settings.redis_password.reveal()
    if settings.redis_sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(settings.redis_sentinels),
            socket_timeout=settings.redis_timeout,
            sentinel_kwargs={
                "password": settings.redis_sentinel_password.reveal() or None,
                "socket_timeout": settings.redis_timeout,
            },
        )
        return cast(R, sentinel.master_for(settings.redis_sentinel_master, redis_class=cls, **options))
    if not settings.redis_url:
        raise ValueError("SMSGW_REDIS_URL is not set")
    pool = ConnectionPool.from_url(settings.redis_url, **options)
    return cls(connection_pool=pool)


def connect(settings: Settings, *, blocking: float | None = None) -> Redis:
    """A decoded (str) client. ``blocking``: the longest blocking command this client will run (seconds)."""
    timeout = settings.redis_timeout + (blocking or 0)
    return _client(settings, Redis, timeout, decode_responses=True)


def arq_pool(settings: Settings, *, blocking: float = 0) -> ArqRedis:
    """arq's client (bytes), with JSON job (de)serialisation: nothing is ever pickled."""
    pool = _client(settings, ArqRedis, settings.redis_timeout + blocking)
    pool.job_serializer = json_dumps
    pool.job_deserializer = json_loads
    return pool


def json_dumps(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, default=str)


def json_loads(raw: bytes) -> dict[str, Any]:
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("job record is not a JSON object")
    return value


@dataclass(frozen=True)
class Durability:
    appendonly: str
    appendfsync: str

    @property
    def durable(self) -> bool:
        """Only AOF with fsync on every write keeps every acknowledged write across a Redis kill."""
        return self.appendonly == "yes" and self.appendfsync == "always"

    def as_dict(self) -> dict[str, Any]:
        return {"appendonly": self.appendonly, "appendfsync": self.appendfsync, "durable": self.durable}


async def durability(client: Redis) -> Durability:
    """Read AOF settings; managed Redis often forbids CONFIG, which reads as 'unknown' (not durable)."""
    try:
        aof = await client.config_get("appendonly")
        fsync = await client.config_get("appendfsync")
    except redis.exceptions.ResponseError:
        return Durability("unknown", "unknown")
    return Durability(str(aof.get("appendonly", "unknown")), str(fsync.get("appendfsync", "unknown")))


async def hash_fields(client: Redis, key: str) -> dict[str, str]:
    """HGETALL on a decoded client, typed (redis-py types sync and async results as one union)."""
    return cast(dict[str, str], await client.hgetall(key))  # type: ignore[misc]
