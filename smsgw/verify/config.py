"""The ``SMSGW_VERIFY_*`` settings: secrets, abuse limits, the pumping guard, safe list and brand names.

Read by ``smsgw.settings.Settings.from_env`` into ``Settings.verify`` (one frozen settings object, as
everywhere else). Without ``SMSGW_VERIFY_SECRETS`` the key is derived from ``SMSGW_CALLBACK_KEY`` (HKDF with
its own purpose, so it is not the callback key): ``smsgw dev`` and the tests work out of the box, and the
gateway warns at start, because rotating the callback key would then invalidate the codes in flight.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import phonenumbers

from smsgw.phones import normalise
from smsgw.verify.sealing import Keyring, VerifyKey, derive_key

__all__ = ["ENV_NAMES", "Limit", "VerifySettings"]

T = TypeVar("T")
MIN_SECRET_LENGTH = 16
MAX_BRAND_NAME = 40
KEY_SOURCES = ("secrets", "callback_key", "none")

ENV_NAMES = frozenset(
    {
        "SMSGW_VERIFY_SECRETS",
        "SMSGW_VERIFY_NUMBER_LIMIT",
        "SMSGW_VERIFY_PREFIX_LIMIT",
        "SMSGW_VERIFY_CLIENT_LIMIT",
        "SMSGW_VERIFY_GUARD_MIN_STARTED",
        "SMSGW_VERIFY_GUARD_WINDOW",
        "SMSGW_VERIFY_GUARD_MIN_CONVERSION",
        "SMSGW_VERIFY_GUARD_BLOCK",
        "SMSGW_VERIFY_RESEND_COOLDOWN",
        "SMSGW_VERIFY_MAX_SENDS",
        "SMSGW_VERIFY_MAX_ATTEMPTS",
        "SMSGW_VERIFY_SAFE_NUMBERS",
        "SMSGW_VERIFY_BRAND_NAMES",
        "SMSGW_VERIFY_RETENTION",
        "SMSGW_VERIFY_SWEEP_INTERVAL",
    }
)


class EnvReader(Protocol):
    """What ``smsgw.settings`` offers for typed reads with one-line errors (its ``_Env``)."""

    def text(self, name: str, default: str | None) -> str | None: ...

    def parse(self, name: str, default: T, parser: Callable[[str], T]) -> T: ...

    def int(self, name: str, default: int, low: int, high: int) -> int: ...

    def float(self, name: str, default: float, low: float, high: float) -> float: ...


@dataclass(frozen=True)
class Limit:
    """At most ``count`` SMS per sliding ``window`` seconds; ``count`` 0 turns the limit off."""

    count: int
    window: int

    @classmethod
    def parse(cls, raw: str) -> Limit:
        count, sep, window = raw.partition("/")
        if not sep or not count.strip().isdigit() or not window.strip().isdigit():
            raise ValueError(f"expected COUNT/SECONDS such as 5/3600 (0/… turns it off), got {raw!r}")
        limit = cls(int(count), int(window))
        if not 1 <= limit.window <= 7 * 86_400 or limit.count > 10_000_000:
            raise ValueError(f"the window must be 1 to 604800 seconds and the count sane, got {raw!r}")
        return limit

    def __str__(self) -> str:
        return f"{self.count}/{self.window}"


@dataclass(frozen=True)
class VerifySettings:
    keys: tuple[VerifyKey, ...] = ()
    key_source: str = "none"  # secrets | callback_key | none
    secret_values: tuple[str, ...] = field(default=(), repr=False)  # only for log redaction
    number_limit: Limit = Limit(5, 3600)
    prefix_limit: Limit = Limit(100, 3600)
    client_limit: Limit = Limit(10_000, 3600)
    guard_min_started: int = 20  # 0 turns the pumping guard off
    guard_window: int = 600
    guard_min_conversion: float = 0.10
    guard_block: int = 900
    resend_cooldown: int = 30
    max_sends: int = 5
    max_attempts: int = 5
    safe_numbers: frozenset[str] = frozenset()
    brand_names: tuple[tuple[int, str], ...] = ()
    retention: int = 86_400
    sweep_interval: float = 15.0

    @classmethod
    def from_env(cls, env: EnvReader) -> VerifySettings:
        no_secrets: tuple[str, ...] = ()
        secrets = env.parse("SMSGW_VERIFY_SECRETS", no_secrets, _secrets)
        callback_key = env.text("SMSGW_CALLBACK_KEY", None)
        keys: tuple[VerifyKey, ...]
        if secrets:
            keys, source = tuple(derive_key(s) for s in secrets), "secrets"
        elif callback_key:
            keys, source = (derive_key(callback_key, b"verify-from-callback-key"),), "callback_key"
        else:
            keys, source = (), "none"
        return cls(
            keys=keys,
            key_source=source,
            secret_values=secrets,
            number_limit=env.parse("SMSGW_VERIFY_NUMBER_LIMIT", Limit(5, 3600), Limit.parse),
            prefix_limit=env.parse("SMSGW_VERIFY_PREFIX_LIMIT", Limit(100, 3600), Limit.parse),
            client_limit=env.parse("SMSGW_VERIFY_CLIENT_LIMIT", Limit(10_000, 3600), Limit.parse),
            guard_min_started=env.int("SMSGW_VERIFY_GUARD_MIN_STARTED", 20, 0, 1_000_000),
            guard_window=env.int("SMSGW_VERIFY_GUARD_WINDOW", 600, 10, 86_400),
            guard_min_conversion=env.float("SMSGW_VERIFY_GUARD_MIN_CONVERSION", 0.10, 0.0, 1.0),
            guard_block=env.int("SMSGW_VERIFY_GUARD_BLOCK", 900, 1, 7 * 86_400),
            resend_cooldown=env.int("SMSGW_VERIFY_RESEND_COOLDOWN", 30, 0, 3600),
            max_sends=env.int("SMSGW_VERIFY_MAX_SENDS", 5, 1, 100),
            max_attempts=env.int("SMSGW_VERIFY_MAX_ATTEMPTS", 5, 1, 100),
            safe_numbers=env.parse("SMSGW_VERIFY_SAFE_NUMBERS", frozenset(), _numbers),
            brand_names=env.parse("SMSGW_VERIFY_BRAND_NAMES", (), _brand_names),
            retention=env.int("SMSGW_VERIFY_RETENTION", 86_400, 60, 30 * 86_400),
            sweep_interval=env.float("SMSGW_VERIFY_SWEEP_INTERVAL", 15.0, 0.05, 55.0),
        )

    @functools.cached_property
    def keyring(self) -> Keyring:
        """Built once per settings object (AES-GCM contexts are reused across calls)."""
        return Keyring(self.keys)

    @functools.cached_property
    def _brands(self) -> dict[int, str]:
        return dict(self.brand_names)

    def brand_name(self, brand_id: int) -> str | None:
        """The service name a verification text uses for a brand (None: the text names no service).

        Today from ``SMSGW_VERIFY_BRAND_NAMES``; the one place to point at a cache of uBill's brandNames.
        """
        return self._brands.get(brand_id)


def _secrets(raw: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in raw.replace("\n", ",").split(",") if part.strip())
    short = [i for i, v in enumerate(values) if len(v) < MIN_SECRET_LENGTH]
    if short:
        raise ValueError(
            f"every secret needs at least {MIN_SECRET_LENGTH} characters (entry {short[0] + 1} is shorter); "
            "list the current secret first, previous ones after it, separated by commas"
        )
    if len(set(values)) != len(values):
        raise ValueError("a secret is listed twice")
    return values


def _numbers(raw: str) -> frozenset[str]:
    everywhere = frozenset(phonenumbers.SUPPORTED_REGIONS)
    out = set()
    for part in raw.split(","):
        if part.strip():
            try:
                out.add(normalise(part.strip(), everywhere))
            except ValueError:
                raise ValueError(
                    "every safe number must be a valid international number (+995…); one is not"
                ) from None
    return frozenset(out)


def _brand_names(raw: str) -> tuple[tuple[int, str], ...]:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError('expected a JSON object of brand id to name, e.g. {"1": "Acme"}')
    out = []
    for key, name in data.items():
        if not str(key).isdigit() or not isinstance(name, str) or not name.strip():
            raise ValueError('expected a JSON object of brand id to name, e.g. {"1": "Acme"}')
        if len(name.strip()) > MAX_BRAND_NAME:
            raise ValueError(f"brand {key}: a name of at most {MAX_BRAND_NAME} characters")
        out.append((int(key), " ".join(name.split())))
    return tuple(sorted(out))
