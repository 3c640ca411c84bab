"""Redis connections (URL or Sentinel) with short timeouts, what counts as "Redis unavailable", and the
durability check the contract asks for.

Timeouts are short on purpose: when Redis is gone the gateway must answer 503 fast rather than hang, and the
worker must notice and wait for it to come back. "Unavailable" is more than a refused connection: a Redis that
answers errors instead of doing its work (out of memory, a failed AOF write, a read-only replica after a
failover, loading, a busy script) is an outage too, and ``is_unavailable`` is the one place that says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from smsgw.errors import StoreUnavailable
from smsgw.settings import Settings

__all__ = ["Durability", "connect", "durability", "is_unavailable", "maybe_sent", "outage_name", "translated"]

R = TypeVar("R", bound=Redis)
MAX_CONNECTIONS = 64  # per pool: a process's Redis connections never grow with its callers

# Error replies that mean "Redis cannot do its job right now", not "this request is wrong". UNBLOCKED is what
# a blocked command (a worker's BLPOP) gets when a failover turns its Redis into a replica.
_OUTAGE_REPLIES = (
    "OOM",
    "MISCONF",
    "READONLY",
    "LOADING",
    "MASTERDOWN",
    "NOREPLICAS",
    "BUSY",
    "TRYAGAIN",
    "UNBLOCKED",
)


# redis-py strips the code of these replies and raises a class of its own instead.
_OUTAGE_CLASSES: dict[type[Exception], str] = {
    redis.exceptions.OutOfMemoryError: "OOM",
    redis.exceptions.ReadOnlyError: "READONLY",
    redis.exceptions.BusyLoadingError: "LOADING",
    redis.exceptions.TryAgainError: "TRYAGAIN",
    redis.exceptions.ClusterDownError: "CLUSTERDOWN",
    # A script Redis does not have even after redis-py re-loaded it: a failover switched servers between the
    # load and the call. It did not run, so it is an outage to retry, not a bug.
    redis.exceptions.NoScriptError: "NOSCRIPT",
}


def is_unavailable(exc: BaseException) -> bool:
    """True for every way Redis can be unavailable: unreachable, too slow, or answering outage errors."""
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return True
    if isinstance(exc, tuple(_OUTAGE_CLASSES)):
        return True
    if isinstance(exc, redis.exceptions.ResponseError):
        text = str(exc).lstrip()
        # Script errors carry the command's reply after a prefix (e.g. "ERR Error running script ...").
        return text.startswith(_OUTAGE_REPLIES) or any(f" {code} " in f" {text} " for code in _OUTAGE_REPLIES)
    return False


def outage_name(exc: BaseException) -> str:
    """A short, secret-free name for an outage (the error class, or the reply's code)."""
    for cls, code in _OUTAGE_CLASSES.items():
        if isinstance(exc, cls):
            return code
    if isinstance(exc, redis.exceptions.ResponseError):
        text = str(exc).lstrip()
        for code in _OUTAGE_REPLIES:
            if text.startswith(code) or f" {code} " in f" {text} ":
                return code
    return type(exc).__name__


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """The store's one boundary: Redis outages become ``StoreUnavailable``; anything else is a bug."""
    try:
        yield
    except redis.exceptions.RedisError as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(f"Redis is unavailable ({outage_name(exc)})") from None
        raise


def maybe_sent(exc: BaseException) -> bool:
    """Could the command that failed with ``exc`` have reached Redis (and run)? Only a failure to connect, or
    an error reply, proves it did not run to completion."""
    if isinstance(exc, redis.exceptions.ResponseError):
        return False
    return "connecting to" not in str(exc)


def _client(settings: Settings, cls: type[R], socket_timeout: float | None, **extra: Any) -> R:
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 30,
        "max_connections": MAX_CONNECTIONS,
        # redis-py never sends a command again by itself: a script sent twice could run twice, and
        # ``maybe_sent`` reads "Error ... connecting to" as "nothing reached Redis", which a retry's
        # reconnect after a timeout would make false. Explicit, so ``retry_on_timeout=true`` in
        # SMSGW_REDIS_URL cannot turn retries on (it only adds error types to a retry of 0 attempts).
        "retry": Retry(NoBackoff(), 0),
        **extra,
    }
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
    # Blocking: past the cap a command waits for a free connection (up to the timeout) instead of failing.
    pool = BlockingConnectionPool.from_url(settings.redis_url, timeout=settings.redis_timeout, **options)
    return cls(connection_pool=pool)


def connect(
    settings: Settings, *, blocking: float | None = None, max_connections: int | None = None
) -> Redis:
    """A decoded (str) client. ``blocking``: the longest blocking command this client will run (seconds)."""
    timeout = settings.redis_timeout + (blocking or 0)
    extra: dict[str, Any] = {"decode_responses": True}
    if max_connections is not None:
        extra["max_connections"] = max_connections
    return _client(settings, Redis, timeout, **extra)


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
