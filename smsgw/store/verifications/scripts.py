"""The verification Lua scripts, loaded once per Redis client (the same scheme as ``smsgw.store.scripts``).

Each script is sent as the store's generated prelude (P, C: shared keys such as the event streams and
channels), a prelude generated from ``keys`` (V prefixes, VC constants), ``lua/_verify.lua``,
then the script: no script spells a key name or a TTL. Each multi-key change of a verification is one script:
atomic against every gateway replica, one unit in the AOF.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from smsgw.store.scripts import lua_table, prelude
from smsgw.store.verifications import keys

__all__ = ["VerifyScripts", "source"]


@functools.cache
def source(name: str) -> str:
    folder = resources.files("smsgw.store.verifications") / "lua"
    return (
        prelude()
        + lua_table("V", dict(keys.LUA_PREFIXES))
        + lua_table("VC", dict(keys.LUA_CONSTANTS))
        + (folder / "_verify.lua").read_text(encoding="utf-8")
        + "\n"
        + (folder / f"{name}.lua").read_text(encoding="utf-8")
    )


@dataclass(frozen=True)
class VerifyScripts:
    create: AsyncScript
    resend: AsyncScript
    check: AsyncScript
    sweep: AsyncScript
    undo: AsyncScript

    @classmethod
    def load(cls, redis: Redis) -> VerifyScripts:
        return cls(**{name: redis.register_script(source(name)) for name in cls.__dataclass_fields__})
