"""The Lua scripts that own the Redis data model, loaded once per client.

Every multi-key change of a message (accept, claim, settle, callback, cancel) is one script, so it is atomic
with respect to every other client and lands in the AOF as one unit. ``_lib.lua`` is prepended to each
script and ``{{NAME}}`` placeholders are filled from ``smsgw.keys``, the one source of key names and TTLs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from smsgw import keys

__all__ = ["Scripts"]

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


def source(name: str) -> str:
    """The full text of one script: the library, then the script, placeholders filled."""
    folder = resources.files("smsgw") / "lua"
    text = (
        (folder / "_lib.lua").read_text(encoding="utf-8")
        + "\n"
        + (folder / f"{name}.lua").read_text(encoding="utf-8")
    )
    return _PLACEHOLDER.sub(lambda m: str(getattr(keys, m.group(1))), text)


@dataclass(frozen=True)
class Scripts:
    accept: AsyncScript
    idempotency: AsyncScript
    cancel: AsyncScript
    claim: AsyncScript
    settle: AsyncScript
    callback: AsyncScript
    rate: AsyncScript
    client_rate: AsyncScript

    @classmethod
    def load(cls, redis: Redis) -> Scripts:
        """Register every script (EVALSHA, re-loaded by redis-py after a Redis restart)."""
        names = list(cls.__dataclass_fields__)
        return cls(**{name: redis.register_script(source(name)) for name in names})
