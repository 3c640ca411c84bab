"""A soak run's options and the settings the product runs with under it.

The product runs with short deadlines and timers so that faults bite and recovery is visible within seconds:
a 0.5 s Redis deadline (the proxy delays replies past it), a 2 s job lease (Redis is stopped longer than it),
reconciliation after 4 s. Unkeyed OTPs are not retried after an ambiguous outcome
(``SMSGW_AMBIGUOUS_RETRY_LANES=none``), so every number uBill got twice is a duplicate the product made,
except the documented accept-then-5xx case, which is counted apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from smsgw.settings import token_sha256

__all__ = [
    "CALLBACK_KEY",
    "CLIENTS",
    "FOREIGN_MARK",
    "PLANTS",
    "TOKENS",
    "UBILL_KEY",
    "Options",
    "product_env",
    "sandbox_env",
]

TOKENS: Final = {"soak-a": "soak-token-a-3f9c1e7d5b", "soak-b": "soak-token-b-8a2d6c4e0f"}
UBILL_KEY: Final = "soak-ubill-key-71c4"
CALLBACK_KEY: Final = "soak-callback-key-2e9b"
CLIENTS: Final = [
    {
        "name": "soak-a",
        "token_sha256": token_sha256(TOKENS["soak-a"]),
        "brands": [1, 2],
        "default_brand": 1,
        "otp": True,
    },
    {
        "name": "soak-b",
        "token_sha256": token_sha256(TOKENS["soak-b"]),
        "brands": [2],
        "default_brand": 2,
        "otp": True,
    },
]
# Text of every send made by "another integration on the same account": such sends are not ours to count.
FOREIGN_MARK: Final = "[other-integration]"
PLANTS: Final = ("duplicate", "lost", "false-delivered", "extra-event", "contract-500")
REDIS_TIMEOUT: Final = 0.5
JOB_LEASE: Final = 2.0


@dataclass(frozen=True)
class Options:
    seed: int
    duration: float  # seconds of workload (faults are injected during it)
    short: bool = False
    topology: str = "single"
    plants: tuple[str, ...] = ()
    keep: bool = False
    faults: bool = True  # False: the workload alone (planted-fault tests)
    rate: float = 0.0  # logical sends per second; 0 = the default for the run's length
    overrides: tuple[tuple[str, str], ...] = ()  # product settings other than the soak's (--set)

    @property
    def send_rate(self) -> float:
        return self.rate or (6.0 if self.short else 8.0)

    @property
    def quiet_limit(self) -> float:
        """Longest settling wait after the workload (it ends earlier once every recipient settled)."""
        return 25.0 if self.short else 180.0

    @property
    def max_bulk(self) -> int:
        return 60 if self.short else 200


def product_env(redis: dict[str, str], ubill_url: str) -> dict[str, str]:
    """``SMSGW_*`` for gateways and workers (ports are added per process)."""
    env = {
        "SMSGW_HTTP_HOST": "127.0.0.1",
        "SMSGW_UBILL_BASE_URL": ubill_url,
        "SMSGW_UBILL_API_KEY": UBILL_KEY,
        "SMSGW_CALLBACK_KEY": CALLBACK_KEY,
        "SMSGW_CLIENTS": json.dumps(CLIENTS),
        "SMSGW_REDIS_TIMEOUT": str(REDIS_TIMEOUT),
        "SMSGW_UBILL_TIMEOUT": "2",
        "SMSGW_UBILL_CONNECT_TIMEOUT": "0.5",
        "SMSGW_RETRY_BASE": "0.1",
        "SMSGW_RETRY_CAP": "1",
        "SMSGW_MAX_ATTEMPTS": "60",
        "SMSGW_BREAKER_COOLDOWN": "1",
        "SMSGW_JOB_LEASE": str(JOB_LEASE),
        "SMSGW_SHUTDOWN_GRACE": "5",
        "SMSGW_BALANCE_INTERVAL": "0",
        "SMSGW_RECONCILE_AFTER": "4",
        "SMSGW_HOUSEKEEPING_INTERVAL": "1",
        # No lane resends after an ambiguous outcome: every number uBill got twice is the product's doing.
        "SMSGW_AMBIGUOUS_RETRY_LANES": "none",
        "SMSGW_LOG_FORMAT": "json",
        "SMSGW_LOG_LEVEL": "info",
    }
    env.update(redis)
    return env


def sandbox_env(port: int, callback_url: str, seed: int) -> dict[str, str]:
    return {
        "SMSGW_SANDBOX_HOST": "127.0.0.1",
        "SMSGW_SANDBOX_PORT": str(port),
        "SMSGW_SANDBOX_API_KEY": UBILL_KEY,
        "SMSGW_SANDBOX_BALANCE": str(10**12),
        "SMSGW_SANDBOX_CALLBACK_URL": callback_url,
        "SMSGW_SANDBOX_CALLBACK_KEY": CALLBACK_KEY,
        "SMSGW_SANDBOX_CALLBACK_DELAY": "0.2",
        "SMSGW_SANDBOX_CALLBACK_RETRY_DELAY": "1.5",
        "SMSGW_SANDBOX_OUTCOMES": "delivered=0.9,failed=0.05,error=0.05",
        "SMSGW_SANDBOX_LATENCY": "0.03",
        "SMSGW_SANDBOX_SEED": str(seed),
        "SMSGW_LOG_LEVEL": "warning",
        "SMSGW_LOG_FORMAT": "json",
    }
