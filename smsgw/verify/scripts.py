"""The verification Lua scripts, loaded once per Redis client (the same scheme as ``smsgw.lua``).

``lua/_verify.lua`` is prepended to each script; ``{{NAME}}`` placeholders come from ``smsgw.verify.keys``
(then ``smsgw.keys``), the one definition of key names and TTLs. Each multi-key change of a verification is
one script: atomic against every gateway replica, one unit in the AOF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from smsgw import keys as core_keys
from smsgw.verify import keys

__all__ = ["VerifyScripts", "source"]

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


def _value(name: str) -> str:
    return str(getattr(keys, name) if hasattr(keys, name) else getattr(core_keys, name))


def source(name: str) -> str:
    folder = resources.files("smsgw.verify") / "lua"
    text = (
        (folder / "_verify.lua").read_text(encoding="utf-8")
        + "\n"
        + (folder / f"{name}.lua").read_text(encoding="utf-8")
    )
    return _PLACEHOLDER.sub(lambda m: _value(m.group(1)), text)


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
