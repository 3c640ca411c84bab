"""What the sandbox remembers: accepted sends, per-number counts, the balance, callbacks and report statuses.

Everything is in memory and bounded: old sends are forgotten once more than ``MAX_RETAINED_NUMBERS``
numbers are held, and the callbacks log keeps the latest ``MAX_CALLBACK_LOG`` attempts. Counts are kept
for every number ever accepted, since tests use them to detect double sends.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["CallbackAttempt", "Clock", "SandboxState", "Send", "rfc3339", "utc_now"]

Clock = Callable[[], datetime]  # injected so tests can put sendTime a second away instead of a minute

FIRST_SMS_ID: Final = 100_000
MAX_RETAINED_NUMBERS: Final = 1_000_000
MAX_CALLBACK_LOG: Final = 500_000
PENDING: Final = 3
# A number's report status only moves forward (sent → pending → final), whatever order callbacks went in.
_RANK: Final = {0: 0, 3: 1, 1: 2, 2: 2, 4: 2}


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Send:
    """One accepted send call; ``statuses`` holds each number's latest status (absent: still pending)."""

    sms_id: int
    time: datetime
    numbers: list[str]
    rejected_numbers: list[str]
    text: str
    brand_id: int
    otp: bool
    stop_list: bool
    send_time: str | None
    method: str
    outcome: str
    statuses: dict[str, int] = field(default_factory=dict)
    # Epoch seconds (float, sub-millisecond) when the call reached the handler, before any simulated latency:
    # benchmarks compare it with a client's clock on the same machine.
    received: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "sms_id": self.sms_id,
            "time": rfc3339(self.time),
            "numbers": self.numbers,
            "rejected_numbers": self.rejected_numbers,
            "text": self.text,
            "brand_id": self.brand_id,
            "otp": self.otp,
            "stop_list": self.stop_list,
            "send_time": self.send_time,
            "method": self.method,
            "outcome": self.outcome,
            "received": self.received,
        }

    def report(self) -> list[dict[str, str]]:
        """uBill's report ``result``: statusIDs as strings, as the public SDKs show them."""
        return [{"number": n, "statusID": str(self.statuses.get(n, PENDING))} for n in self.numbers]


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    sms_id: int
    number: str
    status_id: int
    attempt: int
    time: datetime
    http_status: int | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sms_id": self.sms_id,
            "number": self.number,
            "status_id": self.status_id,
            "attempt": self.attempt,
            "time": rfc3339(self.time),
        }
        if self.error is not None:
            out["error"] = self.error
        else:
            out["http_status"] = self.http_status
        return out


class SandboxState:
    """The sandbox's memory; every method is synchronous so a check and its charge cannot interleave."""

    def __init__(self, balance: int) -> None:
        self.balance = balance
        self.calls = 0
        self.counts: Counter[str] = Counter()
        self.callbacks: deque[CallbackAttempt] = deque(maxlen=MAX_CALLBACK_LOG)
        self._sends: dict[int, Send] = {}
        self._retained = 0
        self._next_id = FIRST_SMS_ID
        self._brands_created: dict[int, datetime] = {}  # one per configured brand id: bounded by the knobs

    def accept(self, send: Send, segments: int) -> Send:
        """Record an accepted call under a new smsID and charge numbers times segments."""
        send.sms_id = self._next_id
        self._next_id += 1
        self.balance -= len(send.numbers) * segments
        self.calls += 1
        self.counts.update(send.numbers)
        self._sends[send.sms_id] = send
        self._retained += len(send.numbers)
        self._forget_oldest()
        return send

    def _forget_oldest(self) -> None:
        while self._retained > MAX_RETAINED_NUMBERS and len(self._sends) > 1:
            oldest = next(iter(self._sends))
            self._retained -= len(self._sends.pop(oldest).numbers)

    def brand_created(self, brand_id: int, now: datetime) -> datetime:
        """When a brand was "created": the first time the sandbox listed it, stable afterwards."""
        return self._brands_created.setdefault(brand_id, now)

    def find(self, sms_id: int) -> Send | None:
        return self._sends.get(sms_id)

    def sends(self, number: str | None = None) -> list[Send]:
        return [s for s in self._sends.values() if number is None or number in s.numbers]

    def set_status(self, sms_id: int, number: str, status_id: int) -> None:
        """A status happened for a number; the report keeps the furthest one reached."""
        send = self._sends.get(sms_id)
        if send is None:
            return
        current = send.statuses.get(number)
        if current is None or _RANK[status_id] >= _RANK[current]:
            send.statuses[number] = status_id

    def clear(self) -> None:
        """Forget sends, counts and callbacks; smsIDs keep increasing and the balance stays."""
        self._sends.clear()
        self._retained = 0
        self.calls = 0
        self.counts.clear()
        self.callbacks.clear()
