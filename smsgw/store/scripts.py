"""The Lua scripts that own the Redis data model, and the prelude that hands them Python's definitions.

Every change of a message (accept, take, settle, callback, cancel) is one script, so it is atomic with respect
to every other client and lands in the AOF as one unit. Each script is sent as: a generated prelude (key
prefixes and TTLs from ``keys``, status ranks from ``statuses``), then ``_lib.lua``, then the script. No
script spells a key prefix, a TTL or a rank: one definition in Python, handed to Lua.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from smsgw.store import keys, statuses

__all__ = ["Scripts", "lua_table", "prelude", "source"]


def lua_table(name: str, values: dict[str, str | int]) -> str:
    """``local NAME = {k = v, ...}`` with JSON-quoted strings (valid Lua string literals for our values)."""
    items = ", ".join(
        f"{k} = {json.dumps(v) if isinstance(v, str) else v}" for k, v in sorted(values.items())
    )
    return f"local {name} = {{{items}}}\n"


@functools.cache
def prelude() -> str:
    ranks: dict[str, str | int] = dict(statuses.RANK)
    return (
        "-- Generated from smsgw/store/keys.py and statuses.py (scripts.prelude): do not edit.\n"
        + lua_table("P", dict(keys.LUA_PREFIXES))
        + lua_table("C", dict(keys.LUA_CONSTANTS))
        + lua_table("RANK", ranks)
        + f"local TERMINAL_RANK = {statuses.TERMINAL_RANK}\n"
    )


@functools.cache
def source(name: str) -> str:
    """The full text of one script: prelude, library, script."""
    folder = resources.files("smsgw.store") / "lua"
    library = (folder / "_lib.lua").read_text(encoding="utf-8")
    return prelude() + library + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Scripts:
    accept: AsyncScript
    findout: AsyncScript
    facade_answered: AsyncScript
    cancel: AsyncScript
    take: AsyncScript
    settle: AsyncScript
    callback: AsyncScript
    beat: AsyncScript
    client_rate: AsyncScript
    upkeep: AsyncScript
    touch: AsyncScript

    @classmethod
    def load(cls, redis: Redis) -> Scripts:
        """Register every script (EVALSHA; redis-py re-loads a script Redis lost on restart)."""
        return cls(**{name: redis.register_script(source(name)) for name in cls.__dataclass_fields__})
