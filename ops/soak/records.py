"""What a soak run records: every request and answer, every fault window, Redis samples. Plain data (JSON).

Times are epoch seconds (``time.time()``) so they compare with the sandbox's ``received`` and the gateway's
``created_at`` on the same machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Answer", "Attempt", "FaultWindow", "Journal", "Sample", "SendRecord"]

OUTCOME_UNKNOWN = "/outcome-unknown"


@dataclass
class Attempt:
    """One HTTP request of a logical send and what came back (``status`` None: no usable answer)."""

    started: float
    ended: float
    status: int | None = None
    problem: str | None = None  # problem+json ``type``, or the facade's ``message``
    error: str | None = None  # the transport failure (timeout, disconnected, ...)
    message_id: str | None = None  # from a 202
    facade_id: str | None = None  # from a facade statusID 0
    retry_after: str | None = None
    status_id: int | None = None  # the facade's statusID

    @property
    def accepted(self) -> bool:
        return self.status == 202 or (self.status == 200 and self.status_id == 0)

    @property
    def ambiguous(self) -> bool:
        """The answer does not say whether the message was stored: the caller cannot know."""
        if self.status is None or self.status == 409:  # 409: the same key is still being processed
            return True
        if self.status == 503:
            return OUTCOME_UNKNOWN in (self.problem or "") or "unknown" in (self.problem or "").lower()
        return self.status >= 500

    @property
    def denies_storing(self) -> bool:
        """An answer that promises nothing was stored (a plain 503, a 429, a refusal)."""
        return self.status is not None and not self.accepted and not self.ambiguous


@dataclass
class SendRecord:
    """One logical send: one body (one set of fresh numbers) and every attempt the caller made with it."""

    seq: int
    kind: str  # otp, transactional, bulk, scheduled, facade-get, facade-post
    client: str
    numbers: list[str]
    retry: str  # keyed (same Idempotency-Key), unkeyed (retries without a key), once (never retries)
    idempotency_key: str | None = None
    send_at: float | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def facade(self) -> bool:
        return self.kind.startswith("facade")

    @property
    def accepted(self) -> bool:
        return any(a.accepted for a in self.attempts)

    @property
    def first_started(self) -> float:
        return self.attempts[0].started if self.attempts else 0.0

    @property
    def last_ended(self) -> float:
        return self.attempts[-1].ended if self.attempts else 0.0


@dataclass
class Answer:
    """Any other request the soak made (cancel, read, hand-made callback) and its answer."""

    route: str
    at: float
    status: int | None
    problem: str | None = None
    retry_after: str | None = None
    note: str = ""


@dataclass
class FaultWindow:
    kind: str
    started: float
    ended: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sample:
    at: float
    used_memory: int | None
    connected_clients: int | None


@dataclass
class Journal:
    """Everything a run wrote down; the checker reads only this and what it collects afterwards."""

    seed: int
    sends: list[SendRecord] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    faults: list[FaultWindow] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    foreign_sms_ids: set[int] = field(default_factory=set)
    cancels: dict[str, float] = field(default_factory=dict)  # message id -> when a cancel was answered 200
    notes: list[str] = field(default_factory=list)
    planted_numbers: set[str] = field(default_factory=set)  # numbers a plant tampered with (kept apart)
    workload_started: float = 0.0
    workload_ended: float = 0.0

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["foreign_sms_ids"] = sorted(self.foreign_sms_ids)
        out["planted_numbers"] = sorted(self.planted_numbers)
        return out
