"""One frozen settings object, read once from ``SMSGW_*`` environment variables.

Every process builds it at start; a missing or malformed value stops the process with one line naming the
variable (``SettingsError``). Tests build it from a plain dict with ``Settings.from_env({...})``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import TypeVar

import phonenumbers

from smsgw.errors import SettingsError
from smsgw.verify.config import ENV_NAMES as VERIFY_ENV_NAMES
from smsgw.verify.config import VerifySettings

__all__ = ["LANES", "Client", "Secret", "Settings"]

T = TypeVar("T")

LANES: tuple[str, ...] = ("otp", "transactional", "bulk")
# Calls each worker keeps in flight per lane (SMSGW_CONCURRENCY_*); 256 transactional: ops/bench "slots".
DEFAULT_CONCURRENCY: Mapping[str, int] = {"otp": 16, "transactional": 256, "bulk": 16}

DEFAULT_HTTP_PORT = 8080
DEFAULT_WORKER_HTTP_PORT = 9091
DEFAULT_UBILL_BASE_URL = "https://api.ubill.dev/v1"
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_BRANDS_INTERVAL = 300.0  # seconds between readings of uBill's brandNames (0 = no brand check)
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class Secret:
    """A string that never shows itself in a repr, a log line or an f-string by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Client:
    """An internal caller: only the sha256 of its token is known to the gateway."""

    name: str
    token_sha256: bytes
    brands: frozenset[int]
    default_brand: int | None = None
    otp: bool = False
    rate: float | None = None
    admin: bool = False


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "mymaster"
    redis_password: Secret = field(default_factory=lambda: Secret(""))
    redis_sentinel_password: Secret = field(default_factory=lambda: Secret(""))
    redis_timeout: float = 2.0
    redis_wait_replicas: int = 0
    redis_wait_timeout: float = 0.5
    http_host: str = "0.0.0.0"  # noqa: S104 - a service listens on every interface of its pod
    http_port: int = DEFAULT_HTTP_PORT
    worker_http_port: int = DEFAULT_WORKER_HTTP_PORT
    ubill_base_url: str = DEFAULT_UBILL_BASE_URL
    ubill_api_key: Secret = field(default_factory=lambda: Secret(""))
    ubill_timeout: float = 10.0
    ubill_connect_timeout: float = 3.0
    ubill_max_url_length: int = 8000
    ubill_rate_calls: int = 0
    ubill_rate_numbers: int = 0
    otp_reserve: float = 0.2
    min_share_transactional: float = 0.1
    min_share_bulk: float = 0.1
    batch_size: int = 100
    callback_key: Secret = field(default_factory=lambda: Secret(""))
    callback_allowed_ips: tuple[IPv4Network | IPv6Network, ...] = ()
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    clients: tuple[Client, ...] = ()
    allowed_countries: frozenset[str] = frozenset({"GE"})
    concurrency: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_CONCURRENCY))
    max_attempts: int = 20
    retry_base: float = 1.0
    retry_cap: float = 300.0
    ambiguous_retry_lanes: frozenset[str] = frozenset({"otp"})
    breaker_threshold: int = 5
    breaker_cooldown: float = 10.0
    shutdown_grace: float = 25.0
    job_lease: float = 5.0
    balance_interval: float = 60.0
    brands_interval: float = DEFAULT_BRANDS_INTERVAL
    reconcile_after: float = 600.0
    housekeeping_interval: float = 30.0
    events_retention: int = 90_000
    events_max_streams: int = 1_000
    events_max_streams_per_client: int = 100
    events_stream_buffer: int = 1_000
    message_retention: int = 7 * 86_400
    orphan_ttl: int = 3_600
    log_format: str = "json"
    log_level: str = "info"
    verify: VerifySettings = field(default_factory=VerifySettings)  # SMSGW_VERIFY_*: smsgw/verify/config.py

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read every ``SMSGW_*`` variable; unknown ones are reported by ``unknown_names``."""
        env = _Env(environ)
        concurrency = {
            lane: env.int(f"SMSGW_CONCURRENCY_{lane.upper()}", d, 1, 1000)
            for lane, d in DEFAULT_CONCURRENCY.items()
        }
        settings = cls(
            redis_url=env.text("SMSGW_REDIS_URL", None),
            redis_sentinels=env.parse("SMSGW_REDIS_SENTINELS", (), _sentinels),
            redis_sentinel_master=env.text("SMSGW_REDIS_SENTINEL_MASTER", "mymaster") or "mymaster",
            redis_password=Secret(env.text("SMSGW_REDIS_PASSWORD", "") or ""),
            redis_sentinel_password=Secret(env.text("SMSGW_REDIS_SENTINEL_PASSWORD", "") or ""),
            redis_timeout=env.float("SMSGW_REDIS_TIMEOUT", 2.0, 0.05, 60),
            redis_wait_replicas=env.int("SMSGW_REDIS_WAIT_REPLICAS", 0, 0, 16),
            redis_wait_timeout=env.float("SMSGW_REDIS_WAIT_TIMEOUT", 0.5, 0.001, 60),
            http_host=env.text("SMSGW_HTTP_HOST", "0.0.0.0") or "0.0.0.0",  # noqa: S104
            http_port=env.int("SMSGW_HTTP_PORT", DEFAULT_HTTP_PORT, 0, 65535),
            worker_http_port=env.int("SMSGW_WORKER_HTTP_PORT", DEFAULT_WORKER_HTTP_PORT, 0, 65535),
            ubill_base_url=env.parse("SMSGW_UBILL_BASE_URL", DEFAULT_UBILL_BASE_URL, _http_url),
            ubill_api_key=Secret(env.text("SMSGW_UBILL_API_KEY", "") or ""),
            ubill_timeout=env.float("SMSGW_UBILL_TIMEOUT", 10.0, 0.1, 300),
            ubill_connect_timeout=env.float("SMSGW_UBILL_CONNECT_TIMEOUT", 3.0, 0.05, 60),
            ubill_max_url_length=env.int("SMSGW_UBILL_MAX_URL_LENGTH", 8000, 512, 1_000_000),
            ubill_rate_calls=env.int("SMSGW_UBILL_RATE_CALLS", 0, 0, 1_000_000),
            ubill_rate_numbers=env.int("SMSGW_UBILL_RATE_NUMBERS", 0, 0, 100_000_000),
            otp_reserve=env.float("SMSGW_OTP_RESERVE", 0.2, 0.0, 0.9),
            min_share_transactional=env.float("SMSGW_MIN_SHARE_TRANSACTIONAL", 0.1, 0.0, 0.9),
            min_share_bulk=env.float("SMSGW_MIN_SHARE_BULK", 0.1, 0.0, 0.9),
            batch_size=env.int("SMSGW_BATCH_SIZE", 100, 1, 1000),
            callback_key=Secret(env.text("SMSGW_CALLBACK_KEY", "") or ""),
            callback_allowed_ips=env.parse("SMSGW_CALLBACK_ALLOWED_IPS", (), _networks),
            trusted_proxies=env.parse("SMSGW_TRUSTED_PROXIES", (), _networks),
            clients=env.parse("SMSGW_CLIENTS", (), _clients),
            allowed_countries=env.parse("SMSGW_ALLOWED_COUNTRIES", frozenset({"GE"}), _countries),
            concurrency=concurrency,
            max_attempts=env.int("SMSGW_MAX_ATTEMPTS", 20, 1, 1000),
            retry_base=env.float("SMSGW_RETRY_BASE", 1.0, 0.01, 3600),
            retry_cap=env.float("SMSGW_RETRY_CAP", 300.0, 0.01, 86_400),
            ambiguous_retry_lanes=env.parse("SMSGW_AMBIGUOUS_RETRY_LANES", frozenset({"otp"}), _lanes),
            breaker_threshold=env.int("SMSGW_BREAKER_THRESHOLD", 5, 1, 10_000),
            breaker_cooldown=env.float("SMSGW_BREAKER_COOLDOWN", 10.0, 0.1, 3600),
            shutdown_grace=env.float("SMSGW_SHUTDOWN_GRACE", 25.0, 0.0, 3600),
            job_lease=env.float("SMSGW_JOB_LEASE", 5.0, 1.0, 600),
            balance_interval=env.float("SMSGW_BALANCE_INTERVAL", 60.0, 0.0, 86_400),
            brands_interval=env.float("SMSGW_BRANDS_INTERVAL", DEFAULT_BRANDS_INTERVAL, 0.0, 86_400),
            reconcile_after=env.float("SMSGW_RECONCILE_AFTER", 600.0, 1.0, 7 * 86_400),
            housekeeping_interval=env.float("SMSGW_HOUSEKEEPING_INTERVAL", 30.0, 0.1, 3600),
            events_retention=env.int("SMSGW_EVENTS_RETENTION", 90_000, 86_400, 30 * 86_400),
            events_max_streams=env.int("SMSGW_EVENTS_MAX_STREAMS", 1_000, 1, 100_000),
            events_max_streams_per_client=env.int("SMSGW_EVENTS_MAX_STREAMS_PER_CLIENT", 100, 1, 100_000),
            events_stream_buffer=env.int("SMSGW_EVENTS_STREAM_BUFFER", 1_000, 10, 100_000),
            message_retention=env.int("SMSGW_MESSAGE_RETENTION", 7 * 86_400, 60, 365 * 86_400),
            orphan_ttl=env.int("SMSGW_ORPHAN_TTL", 3_600, 5, 7 * 86_400),
            log_format=env.choice("SMSGW_LOG_FORMAT", "json", ("json", "console")),
            log_level=env.choice("SMSGW_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            verify=VerifySettings.from_env(env),
        )
        settings._check_consistency()
        return settings

    def _check_consistency(self) -> None:
        if self.ubill_rate_numbers:
            # OTP's reserve is never lent out: what is left is the most a transactional or bulk call can get.
            room = self.ubill_rate_numbers - math.floor(self.otp_reserve * self.ubill_rate_numbers)
            if self.batch_size > room:
                raise SettingsError(
                    f"SMSGW_BATCH_SIZE: {self.batch_size} numbers per call cannot fit in one second of "
                    f"SMSGW_UBILL_RATE_NUMBERS={self.ubill_rate_numbers} once "
                    f"SMSGW_OTP_RESERVE={self.otp_reserve:g} "
                    f"is kept for OTP (at most {room}): lower the batch size or raise the rate"
                )
        if self.redis_wait_replicas and self.redis_wait_timeout >= self.redis_timeout:
            raise SettingsError(
                "SMSGW_REDIS_WAIT_TIMEOUT: must be shorter than SMSGW_REDIS_TIMEOUT "
                f"({self.redis_timeout:g} s), or the gateway gives up before the replicas' confirmation comes"
            )
        if self.otp_reserve + self.min_share_transactional + self.min_share_bulk > 1.0:
            raise SettingsError(
                "SMSGW_OTP_RESERVE: with SMSGW_MIN_SHARE_TRANSACTIONAL and SMSGW_MIN_SHARE_BULK "
                "it must sum to <= 1"
            )

    def require(self, *names: str) -> None:
        """Stop a process that needs a setting with no value (e.g. the worker without a uBill key)."""
        for name in names:
            if name == "SMSGW_REDIS_URL" and self.redis_sentinels:
                continue
            if not getattr(self, name.removeprefix("SMSGW_").lower()):
                raise SettingsError(f"{name}: required by this command but not set (nor {name}{FILE_SUFFIX})")

    def client_by_name(self, name: str) -> Client | None:
        return next((c for c in self.clients if c.name == name), None)


KNOWN_PREFIXES = ("SMSGW_SANDBOX_", "SMSGW_DEV_")  # read by the sandbox and by `smsgw dev`
FILE_SUFFIX = "_FILE"  # SMSGW_<NAME>_FILE=/path: the setting's value is that file's content


def unknown_names(environ: Mapping[str, str]) -> list[str]:
    """``SMSGW_*`` names that nothing reads: most often a typo worth a warning at start."""
    known = {f"SMSGW_{f.upper()}" for f in Settings.__dataclass_fields__} | {
        f"SMSGW_CONCURRENCY_{lane.upper()}" for lane in LANES
    }
    known.discard("SMSGW_CONCURRENCY")
    known |= {name + FILE_SUFFIX for name in known}
    known |= VERIFY_ENV_NAMES
    return sorted(
        name
        for name in environ
        if name.startswith("SMSGW_") and name not in known and not name.startswith(KNOWN_PREFIXES)
    )


class _Env:
    """Typed reads with one-line errors that name the variable and the bad value.

    Every setting can also come from a file named by ``<NAME>_FILE`` (a Kubernetes or Docker secret mounted
    as a file, so it never sits in the process environment); its content, less the trailing newline, is read
    exactly as the variable's value would be. Setting both is an error rather than a silent precedence.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        path = (self._environ.get(name + FILE_SUFFIX) or "").strip()
        if not path:
            return value
        if value is not None and value.strip():
            raise SettingsError(f"{name} and {name}{FILE_SUFFIX} are both set: set only one of them")
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SettingsError(f"{name}{FILE_SUFFIX}: cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise SettingsError(f"{name}{FILE_SUFFIX}: {path} is not UTF-8 text") from None

    def text(self, name: str, default: str | None) -> str | None:
        value = self._raw(name)
        return default if value is None or value.strip() == "" else value.strip()

    def parse(self, name: str, default: T, parser: Callable[[str], T]) -> T:
        raw = self.text(name, None)
        if raw is None:
            return default
        try:
            return parser(raw)
        except (ValueError, TypeError, KeyError, OSError, json.JSONDecodeError) as exc:
            raise SettingsError(f"{name}: {exc}") from None

    def int(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    def float(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name, None)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}: expected a number, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.text(name, None)
        if raw is None:
            return default
        if raw.lower() not in choices:
            raise SettingsError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")
        return raw.lower()


def _http_url(raw: str) -> str:
    if not re.match(r"^https?://[^/\s]+", raw):
        raise ValueError(f"expected an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    out = []
    for part in raw.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected host:port[,host:port...], got {raw!r}")
        out.append((host, int(port)))
    return tuple(out)


def _networks(raw: str) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip())


def _countries(raw: str) -> frozenset[str]:
    codes = frozenset(part.strip().upper() for part in raw.split(",") if part.strip())
    supported = phonenumbers.SUPPORTED_REGIONS
    bad = sorted(code for code in codes if code not in supported)
    if bad or not codes:
        raise ValueError(f"unknown ISO 3166 country code(s): {', '.join(bad) or raw!r}")
    return codes


def _lanes(raw: str) -> frozenset[str]:
    """A comma-separated list of lanes; ``none`` for none (an empty variable reads as unset: the default)."""
    if raw.strip().lower() == "none":
        return frozenset()
    lanes = frozenset(part.strip().lower() for part in raw.split(",") if part.strip())
    bad = sorted(lanes - set(LANES))
    if bad:
        raise ValueError(f"unknown lane(s) {', '.join(bad)}; lanes are {', '.join(LANES)}")
    return lanes


def _clients(raw: str) -> tuple[Client, ...]:
    text = Path(raw[1:]).read_text(encoding="utf-8") if raw.startswith("@") else raw
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("expected a JSON list of clients")
    clients = tuple(_client(i, item) for i, item in enumerate(data))
    names = [c.name for c in clients]
    if len(set(names)) != len(names):
        raise ValueError("client names must be unique")
    hashes = [c.token_sha256 for c in clients]
    if len(set(hashes)) != len(hashes):
        raise ValueError("two clients share one token hash")
    return clients


def _client(index: int, item: object) -> Client:
    where = f"client #{index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object")
    name = item.get("name")
    if not isinstance(name, str) or not _CLIENT_NAME.match(name):
        raise ValueError(f"{where}: 'name' must be 1-63 letters, digits, '.', '_' or '-'")
    digest = item.get("token_sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        raise ValueError(f"{where} ({name}): 'token_sha256' must be 64 hex digits")
    brands = item.get("brands", [])
    if not isinstance(brands, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) for b in brands
    ):
        raise ValueError(f"{where} ({name}): 'brands' must be a list of integers")
    default = item.get("default_brand")
    if default is not None and default not in brands:
        raise ValueError(f"{where} ({name}): 'default_brand' must be one of 'brands'")
    rate = item.get("rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0):
        raise ValueError(f"{where} ({name}): 'rate' must be a positive number")
    return Client(
        name=name,
        token_sha256=bytes.fromhex(digest),
        brands=frozenset(brands),
        default_brand=default,
        otp=bool(item.get("otp", False)),
        rate=float(rate) if rate is not None else None,
        admin=bool(item.get("admin", False)),
    )


def token_sha256(token: str) -> str:
    """The value to put in ``SMSGW_CLIENTS`` for a token (used by ``smsgw dev`` and the docs)."""
    return hashlib.sha256(token.encode()).hexdigest()
