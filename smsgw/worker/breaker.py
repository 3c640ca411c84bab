"""A circuit breaker per worker process: stop hammering uBill during an outage, probe, resume by itself.

Closed → (``threshold`` consecutive transport failures) → open for ``cooldown`` → half-open: one probe call
goes; its success closes the breaker, its failure opens it again. Queued work is only deferred meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["STATE_NAMES", "CircuitBreaker"]

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half-open", OPEN: "open"}


class CircuitBreaker:
    def __init__(
        self,
        threshold: int,
        cooldown: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._on_change = on_change or (lambda _state: None)
        self.state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None

    def _set(self, state: int) -> None:
        if state != self.state:
            self.state = state
            self._on_change(state)

    def blocked(self) -> bool:
        """True when a call must not go now; the first caller after the cooldown becomes the probe."""
        now = self._clock()
        if self.state == OPEN:
            if now - self._opened_at < self.cooldown:
                return True
            self._set(HALF_OPEN)
            self._probe_started = now
            return False
        if self.state == HALF_OPEN:
            # A probe that never reported (its unit had nothing to send) must not block forever.
            if self._probe_started is not None and now - self._probe_started < self.cooldown:
                return True
            self._probe_started = now
            return False
        return False

    def remaining(self) -> float:
        """Seconds until a probe may go."""
        start = self._opened_at if self.state == OPEN else (self._probe_started or 0.0)
        return max(0.0, self.cooldown - (self._clock() - start)) if self.state != CLOSED else 0.0

    def success(self) -> None:
        self._failures = 0
        self._probe_started = None
        self._set(CLOSED)

    def failure(self) -> None:
        self._failures += 1
        if self.state == HALF_OPEN or self._failures >= self.threshold:
            self._opened_at = self._clock()
            self._probe_started = None
            self._set(OPEN)
