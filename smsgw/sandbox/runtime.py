"""The one object every sandbox handler shares: current knobs, memory, randomness, the clock, callbacks.

It lives under the typed app key ``SANDBOX``; handlers read ``config`` afresh on each call, so a PATCH
takes effect on the next request.
"""

from __future__ import annotations

import asyncio
import random
from typing import Final

from aiohttp import web

from smsgw.sandbox.config import SandboxConfig
from smsgw.sandbox.delivery import Deliverer
from smsgw.sandbox.state import Clock, SandboxState, utc_now

__all__ = ["SANDBOX", "Sandbox"]


class Sandbox:
    def __init__(self, config: SandboxConfig, clock: Clock = utc_now) -> None:
        self.config = config
        self.clock = clock
        self.state = SandboxState(config.balance)
        self.rng = random.Random(config.seed)  # noqa: S311 - simulation, not security
        self.deliverer = Deliverer(lambda: self.config, self.state, self.rng, clock)
        # Set when the server shuts down, so stalled calls let go instead of holding shutdown up.
        self.stopping = asyncio.Event()

    def reconfigure(self, patch: dict[str, object]) -> SandboxConfig:
        """Apply a PATCH; a new ``balance`` resets the remaining balance (``ValueError`` on a bad field)."""
        self.config = self.config.update(patch)
        if "balance" in patch:
            self.state.balance = self.config.balance
        return self.config


SANDBOX: Final = web.AppKey("sandbox", Sandbox)
