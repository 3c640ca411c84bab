"""The arq job: hand one dispatch unit (up to a batch of one message's numbers) to uBill, exactly once.

One attempt is: breaker check → capacity → claim (Lua: cancel, expiry and send-once decided at the moment of
dispatch; the unit is marked ``calling`` before the request leaves) → uBill call → settle (Lua). A unit found
``calling`` by a later run means an attempt died mid-call: that outcome is unknown and follows the ambiguity
policy instead of being blindly resent. The job never lets arq mark it failed (that would drop it): every
failure ends in a settled status or an arq ``Retry``.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from arq.worker import Retry
from redis.asyncio import Redis

from smsgw import keys
from smsgw.clock import iso, now_ms
from smsgw.errors import ProviderOutcomeUnknown, ProviderRefused, ProviderUnavailable
from smsgw.events import stream_minid
from smsgw.lua import Scripts
from smsgw.metrics import WorkerMetrics
from smsgw.redisdb import REDIS_ERRORS
from smsgw.settings import Settings
from smsgw.ubill import UbillClient
from smsgw.verify.sealing import open_sms_text
from smsgw.worker.breaker import CircuitBreaker
from smsgw.worker.limiter import DispatchLimiter

__all__ = ["Claim", "Dispatcher", "dispatch"]

log = structlog.get_logger(__name__)
SETTLE_PATIENCE = 60.0  # keep trying to record an outcome this long while Redis is away


@dataclass(frozen=True)
class Claim:
    kind: str  # gone | done | ambiguous | empty | send
    tries: int = 0
    client: str = ""
    lane: str = ""
    brand_id: int = 0
    text: str = ""
    stop_list: bool = True
    created_ms: int = 0
    send_at_ms: int | None = None
    expires_ms: int = 0
    numbers: list[str] = field(default_factory=list)
    detail: str = ""

    @classmethod
    def parse(cls, raw: list[Any]) -> Claim:
        kind = str(raw[0])
        if kind == "ambiguous":
            return cls(kind, tries=int(raw[2]), expires_ms=int(raw[3]), detail=str(raw[1]))
        if kind == "empty":
            return cls(kind, detail=str(raw[1]), created_ms=int(raw[2]))
        if kind != "send":
            return cls(kind, detail=str(raw[1]) if len(raw) > 1 else "")
        tries, client, lane, brand, text, stop_list, created, send_at, expires = raw[1:10]
        return cls(
            kind,
            int(tries),
            str(client),
            str(lane),
            int(brand),
            str(text),
            stop_list == "1",
            int(created),
            int(send_at) if send_at else None,
            int(expires),
            [str(n) for n in raw[10:]],
        )


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): spreads retries of a whole outage."""
    return random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))  # noqa: S311 - jitter, not crypto


@dataclass
class Dispatcher:
    settings: Settings
    redis: Redis
    scripts: Scripts
    ubill: UbillClient
    breaker: CircuitBreaker
    limiter: DispatchLimiter
    metrics: WorkerMetrics
    owner: str
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Units whose claim this process sent but never heard back from (Redis went away): their 'calling'
    # state is ours and no request left, so a re-run here may send without the ambiguity policy.
    _unsent: set[str] = field(default_factory=set)

    async def run(self, lane: str, message_id: str, k: int, n: int) -> str:
        if self.breaker.blocked():
            self.metrics.retries.labels(lane, "breaker_open").inc()
            raise Retry(defer=self.breaker.remaining() + random.uniform(0.05, 0.5))  # noqa: S311
        await self.limiter.acquire(lane, n, self.stopping)
        claim = await self._claim(message_id, k)
        if claim.kind == "ambiguous" and claim.detail == self.owner and self._sent_nothing(message_id, k):
            await self._settle(
                message_id, k, "retry", reason="claim answer lost with Redis; nothing was sent"
            )
            raise Retry(defer=0.05)
        if claim.kind == "ambiguous":
            return await self._ambiguous(
                lane, message_id, k, claim, f"an earlier attempt died mid-call ({claim.detail})"
            )
        if claim.kind != "send":
            if claim.kind == "empty" and int(claim.detail or 0):
                self.metrics.recipients.labels(lane, "expired").inc(int(claim.detail))
                self._observe_final(lane, "expired", claim, int(claim.detail))
            return claim.kind
        return await self._call(lane, message_id, k, claim)

    async def _call(self, lane: str, message_id: str, k: int, claim: Claim) -> str:
        started = time.perf_counter()
        try:
            text = open_sms_text(claim.text, self.settings.verify.keyring)  # verification SMS: sealed text
            sms_id = await self.ubill.send(
                claim.numbers, text, claim.brand_id, otp=lane == "otp", stop_list=claim.stop_list
            )
        except ProviderRefused as exc:
            self._observe_call(exc.outcome, started)
            self.breaker.success()
            await self._settle(message_id, k, "refused", reason=exc.reason)
            self.metrics.recipients.labels(lane, "rejected").inc(len(claim.numbers))
            self._observe_final(lane, "rejected", claim, len(claim.numbers))
            log.info(
                "dispatch.rejected", count=len(claim.numbers), status_id=exc.status_id, reason=exc.reason
            )
            return "rejected"
        except ProviderUnavailable as exc:
            self._observe_call(exc.outcome, started)
            self.breaker.failure()
            return await self._retry(lane, message_id, k, claim, exc.reason, exc.outcome, exc.retry_after)
        except ProviderOutcomeUnknown as exc:
            self._observe_call(exc.outcome, started)
            self.breaker.failure()
            return await self._ambiguous(lane, message_id, k, claim, exc.reason)
        self._observe_call("accepted", started)
        self.breaker.success()
        await self._settle(message_id, k, "acked", sms_id=sms_id or "")
        self._observe_latency(lane, claim)
        self.metrics.recipients.labels(lane, "submitted").inc(len(claim.numbers))
        log.info(
            "dispatch.submitted",
            count=len(claim.numbers),
            sms_id=sms_id,
            attempt=claim.tries + 1,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return "submitted"

    async def _retry(
        self,
        lane: str,
        message_id: str,
        k: int,
        claim: Claim,
        reason: str,
        cause: str,
        retry_after: float | None = None,
    ) -> str:
        attempt = claim.tries + 1
        if attempt >= self.settings.max_attempts:
            await self._settle(
                message_id, k, "dead", reason=f"retries exhausted after {attempt} attempts: {reason}"
            )
            self.metrics.dead_letters.labels(lane).inc()
            self.metrics.recipients.labels(lane, "dead").inc(len(claim.numbers))
            self._observe_final(lane, "failed", claim, len(claim.numbers))
            log.warning("dispatch.dead_letter", attempts=attempt, reason=reason)
            return "dead"
        await self._settle(message_id, k, "retry", reason=reason)
        delay = max(backoff(attempt, self.settings.retry_base, self.settings.retry_cap), retry_after or 0.0)
        # Never past validity: the last retry lands at expires_at, where the claim expires what is left.
        delay = min(delay, max(0.0, (claim.expires_ms - now_ms()) / 1000))
        self.metrics.retries.labels(lane, cause).inc()
        self.metrics.recipients.labels(lane, "retried").inc(len(claim.numbers))
        log.info("dispatch.retry", attempt=attempt, reason=reason, defer_s=round(delay, 3))
        raise Retry(defer=delay)

    async def _ambiguous(self, lane: str, message_id: str, k: int, claim: Claim, reason: str) -> str:
        """The request may have reached uBill: retry only where a duplicate beats a miss (OTP by default)."""
        retryable = lane in self.settings.ambiguous_retry_lanes and now_ms() < claim.expires_ms
        if retryable:
            return await self._retry(
                lane, message_id, k, claim, f"outcome unknown, retried by policy: {reason}", "ambiguous"
            )
        await self._settle(message_id, k, "unknown", reason=f"outcome unknown: {reason}")
        self.metrics.recipients.labels(lane, "unknown").inc(len(claim.numbers))
        log.warning("dispatch.unknown", reason=reason)
        return "unknown"

    def _sent_nothing(self, message_id: str, k: int) -> bool:
        unit = keys.unit_id(message_id, k)
        if unit in self._unsent:
            self._unsent.discard(unit)
            return True
        return False

    async def _claim(self, message_id: str, k: int) -> Claim:
        now = now_ms()
        minid = stream_minid(now, self.settings.events_retention)
        try:
            raw = await self.scripts.claim(
                keys=[keys.message(message_id)],
                args=[k, now, iso(now), minid, self.owner, keys.UNSETTLED_TTL],
            )
        except REDIS_ERRORS:
            self._unsent.add(keys.unit_id(message_id, k))
            raise
        self._unsent.discard(keys.unit_id(message_id, k))
        return Claim.parse(raw)

    async def _settle(
        self, message_id: str, k: int, outcome: str, *, sms_id: str = "", reason: str = ""
    ) -> None:
        """Record an outcome; an acknowledged send must be recorded, so Redis outages are waited out."""
        deadline = time.monotonic() + SETTLE_PATIENCE
        while True:
            now = now_ms()
            try:
                await self.scripts.settle(
                    keys=[keys.message(message_id)],
                    args=[
                        k,
                        outcome,
                        now,
                        iso(now),
                        stream_minid(now, self.settings.events_retention),
                        sms_id,
                        reason,
                        keys.SMS_ID_TTL,
                        keys.UNSETTLED_TTL,
                    ],
                )
                return
            except REDIS_ERRORS as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("dispatch.settle_waiting_for_redis", outcome=outcome, error=type(exc).__name__)
                await asyncio.sleep(0.5)

    def _observe_call(self, outcome: str, started: float) -> None:
        self.metrics.ubill_requests.labels("send", outcome).inc()
        self.metrics.ubill_duration.labels("send").observe(time.perf_counter() - started)

    def _observe_final(self, lane: str, status: str, claim: Claim, count: int) -> None:
        if claim.created_ms:
            elapsed = max(0.0, (now_ms() - claim.created_ms) / 1000)
            for _ in range(count):
                self.metrics.final_latency.labels(lane, status).observe(elapsed)

    def _observe_latency(self, lane: str, claim: Claim) -> None:
        start = claim.send_at_ms if claim.send_at_ms is not None else claim.created_ms
        latency = max(0.0, (now_ms() - start) / 1000)
        for _ in claim.numbers:
            self.metrics.dispatch_latency.labels(lane).observe(latency)


async def dispatch(ctx: dict[str, Any], message_id: str, k: int, n: int) -> str:
    """arq entry point (function name ``dispatch``; args written by the gateway's accept script)."""
    dispatcher: Dispatcher = ctx["dispatcher"]
    lane: str = ctx["lane"]
    structlog.contextvars.bind_contextvars(message_id=message_id, unit=k, job_id=ctx.get("job_id"), lane=lane)
    running = dispatcher.metrics.jobs_running.labels(lane)
    running.inc()
    try:
        return await dispatcher.run(lane, message_id, k, n)
    except Retry:
        raise
    except REDIS_ERRORS as exc:
        log.warning("dispatch.redis_unavailable", error=type(exc).__name__)
        raise Retry(defer=1.0) from None
    except Exception:
        # A bug must not drop the unit: log it and try again later.
        log.exception("dispatch.failed")
        raise Retry(defer=backoff(int(ctx.get("job_try", 1)), 1.0, 60.0)) from None
    finally:
        running.dec()
        structlog.contextvars.unbind_contextvars("message_id", "unit", "job_id", "lane")
