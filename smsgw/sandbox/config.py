"""The sandbox's knobs: read once from ``SMSGW_SANDBOX_*`` and changeable at run time through PATCH.

Each field has one parser that accepts both an environment string and a JSON value, so the start-up path
(``SettingsError`` naming the variable) and the run-time path (``ValueError`` naming the field) agree.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from smsgw.errors import SettingsError
from smsgw.settings import Secret

__all__ = ["OUTCOMES", "PREFIX", "SandboxConfig"]

PREFIX: Final = "SMSGW_SANDBOX_"
DEFAULT_PORT: Final = 8081
DEFAULT_BALANCE: Final = 1_000_000
# The final callback statusIDs an outcome name stands for (0 sent and 3 pending are never final).
OUTCOMES: Final[Mapping[str, int]] = {"delivered": 1, "failed": 2, "error": 4}
# Faults share one random draw per send call, so their rates are exact shares and must fit in one.
FAULT_RATES: Final = ("stall_rate", "error_rate", "accept_error_rate", "drop_rate", "rate_limited_rate")
_MAX_SECONDS: Final = 3600.0
_URL = re.compile(r"^https?://[^/\s?#]+")


@dataclass(frozen=True)
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key: Secret = field(default_factory=lambda: Secret("sandbox-key"))
    brands: Mapping[int, str] = field(default_factory=lambda: {1: "SMSGW", 2: "Shop"})
    # Brands listed but not approved yet (``authorized`` "2"): uBill refuses sends with them (statusID 10).
    unapproved_brands: frozenset[int] = frozenset()
    balance: int = DEFAULT_BALANCE
    callback_url: str | None = None
    callback_key: Secret = field(default_factory=lambda: Secret(""))
    callback_delay: float = 0.2
    callback_retry_delay: float = 1.0
    outcomes: Mapping[str, float] = field(default_factory=lambda: {"delivered": 1.0})
    sent_first: bool = True
    pending_first: bool = False
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    lost_rate: float = 0.0
    latency: float = 0.0
    error_rate: float = 0.0
    stall_rate: float = 0.0
    accept_error_rate: float = 0.0
    drop_rate: float = 0.0
    rate_limited_rate: float = 0.0
    seed: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SandboxConfig:
        """Read every ``SMSGW_SANDBOX_*`` variable; a bad one raises ``SettingsError`` naming it."""
        values: dict[str, Any] = {}
        for name, parse in _PARSERS.items():
            raw = environ.get(PREFIX + name.upper(), "").strip()
            if not raw:
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{PREFIX}{name.upper()}: {exc}") from None
        config = cls(**values)
        problem = config._problem()
        if problem:
            raise SettingsError(", ".join(PREFIX + n.upper() for n in FAULT_RATES) + f": {problem}")
        return config

    @staticmethod
    def unknown_names(environ: Mapping[str, str]) -> list[str]:
        """``SMSGW_SANDBOX_*`` names nothing reads: most often a typo worth a warning at start."""
        known = {PREFIX + name.upper() for name in _PARSERS}
        return sorted(n for n in environ if n.startswith(PREFIX) and n not in known)

    def update(self, patch: Mapping[str, Any]) -> SandboxConfig:
        """A copy with ``patch`` applied; ``ValueError`` names the first bad or unchangeable field."""
        changes: dict[str, Any] = {}
        for name, raw in patch.items():
            if name not in RUNTIME_FIELDS:
                raise ValueError(f"{name}: unknown or not changeable at run time")
            try:
                changes[name] = _PARSERS[name](raw)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        config = dataclasses.replace(self, **changes)
        problem = config._problem()
        if problem:
            raise ValueError(f"{', '.join(FAULT_RATES)}: {problem}")
        return config

    def public(self) -> dict[str, Any]:
        """The knobs as JSON, keys never included (only whether the callback key is set)."""
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in _PLAIN},
            "brands": {str(i): name for i, name in self.brands.items()},
            "unapproved_brands": sorted(self.unapproved_brands),
            "callback_key_set": bool(self.callback_key),
            "outcomes": dict(self.outcomes),
        }

    def _problem(self) -> str | None:
        if sum(getattr(self, name) for name in FAULT_RATES) > 1.0 + 1e-9:
            return "a send call meets at most one fault, so these rates must sum to at most 1"
        return None


def _text(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"expected a non-empty string, got {raw!r}")
    return raw.strip()


def _number(raw: object, low: float, high: float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"expected a number, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _integer(raw: object, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ValueError(f"expected an integer, got {raw!r}")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}, got {value}")
    return value


def _flag(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = raw.strip().lower() if isinstance(raw, str) else None
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"expected true, false, 1 or 0, got {raw!r}")


def _url(raw: object) -> str | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str) or not _URL.match(raw.strip()):
        raise ValueError("expected an http(s) URL")  # not echoed: a callback URL may carry a token
    return raw.strip()


def _secret(raw: object) -> Secret:
    if raw is None:
        return Secret("")
    if not isinstance(raw, str):
        raise ValueError("expected a string")  # never echo a key
    return Secret(raw)


def _pairs(raw: object, sep: str) -> list[tuple[str, object]]:
    """``a<sep>b,c<sep>d`` or a JSON object, as (name, value) pairs."""
    if isinstance(raw, Mapping):
        return [(str(k), v) for k, v in raw.items()]
    if not isinstance(raw, str):
        raise ValueError(f"expected 'x{sep}y,...' or an object, got {raw!r}")
    pairs: list[tuple[str, object]] = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, found, value = part.partition(sep)
        if not found:
            raise ValueError(f"expected 'x{sep}y' pairs separated by commas, got {part!r}")
        pairs.append((name.strip(), value.strip()))
    return pairs


def _brands(raw: object) -> Mapping[int, str]:
    brands: dict[int, str] = {}
    for key, name in _pairs(raw, ":"):
        brand_id = _integer(key, 1, 2**31 - 1)
        if brand_id in brands:
            raise ValueError(f"brand id {brand_id} appears twice")
        brands[brand_id] = _text(name)
    if not brands:
        raise ValueError("expected at least one id:name pair")
    return brands


def _ids(raw: object) -> frozenset[int]:
    """``3,4``, a JSON list of ids, or empty for none."""
    if isinstance(raw, list):
        items: list[object] = list(raw)
    elif isinstance(raw, str):
        items = [part.strip() for part in raw.split(",") if part.strip()]
    else:
        raise ValueError(f"expected ids separated by commas or a list, got {raw!r}")
    return frozenset(_integer(item, 1, 2**31 - 1) for item in items)


def _outcomes(raw: object) -> Mapping[str, float]:
    weights: dict[str, float] = {}
    for name, weight in _pairs(raw, "="):
        if name not in OUTCOMES:
            raise ValueError(f"unknown outcome {name!r}; outcomes are {', '.join(OUTCOMES)}")
        weights[name] = _number(weight, 0.0, 1e9)
    if sum(weights.values()) <= 0:
        raise ValueError("expected at least one outcome with a positive weight")
    return weights


def _seed(raw: object) -> int | None:
    return None if raw is None else _integer(raw, -(2**63), 2**63 - 1)


_rate = partial(_number, low=0.0, high=1.0)
_seconds = partial(_number, low=0.0, high=_MAX_SECONDS)

_PARSERS: Final[dict[str, Callable[[object], Any]]] = {
    "host": _text,
    "port": partial(_integer, low=0, high=65535),
    "api_key": lambda raw: Secret(_text(raw)),
    "brands": _brands,
    "unapproved_brands": _ids,
    "balance": partial(_integer, low=0, high=10**12),
    "callback_url": _url,
    "callback_key": _secret,
    "callback_delay": _seconds,
    "callback_retry_delay": _seconds,
    "outcomes": _outcomes,
    "sent_first": _flag,
    "pending_first": _flag,
    "duplicate_rate": _rate,
    "reorder_rate": _rate,
    "lost_rate": _rate,
    "latency": _seconds,
    "error_rate": _rate,
    "stall_rate": _rate,
    "accept_error_rate": _rate,
    "drop_rate": _rate,
    "rate_limited_rate": _rate,
    "seed": _seed,
}
# Where the server listens, what clients authenticate with and the random seed are fixed at start.
RUNTIME_FIELDS: Final = frozenset(_PARSERS) - {"host", "port", "api_key", "seed"}
_PLAIN: Final = frozenset(_PARSERS) - {"api_key", "brands", "unapproved_brands", "callback_key", "outcomes"}
