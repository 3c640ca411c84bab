"""One job of a lane, as a ladder that reads top to bottom (httpx's ``send`` is the model):

    run(job)        what kind of job: a claimed unit to send, an attempt to settle by policy, a report to read
    send(job)       breaker → call → record: one ``Attempt`` carried down
    _call(attempt)  the uBill call, its answer classified once into a typed ``Answer``
    _record(...)    the answer → an ``Outcome`` for the store (retry, backoff, dead letter, ambiguity policy)

Units reach ``send`` already claimed by the take script (recipients ``dispatching``, unit ``calling`` by this
worker, before any request leaves), so cancel, expiry and send-once are decided before the call. An outcome
that cannot be known is never blindly resent (``_ambiguous``). A known answer is held until Redis records it,
whatever Redis answers meanwhile (``_settle``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.exceptions
import structlog

from smsgw.clock import now_ms
from smsgw.errors import (
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderRefused,
    ProviderUnavailable,
    StoreUnavailable,
)
from smsgw.metrics import WorkerMetrics
from smsgw.settings import Settings
from smsgw.store.delivery import Deliveries
from smsgw.store.dispatch import (
    Dispatch,
    Expired,
    Job,
    Mine,
    Orphaned,
    Outcome,
    Reconcile,
    Send,
    Settled,
    UnitRef,
)
from smsgw.ubill import UbillClient
from smsgw.worker.breaker import CircuitBreaker

__all__ = ["Dispatcher", "backoff"]

log = structlog.get_logger(__name__)
RECONCILE_MAX_DELAY_MS = 6 * 3600 * 1000
ACCEPTED_MEMORY = 100_000  # unit ids (~100 bytes each): the acceptances of the last minutes at full speed
CLAIM_RETRY_MS = 500  # a claim not yet on the replicas (WAIT) is taken again this soon
# Outcomes that end an attempt for good: with WAIT they are written until the replicas have them. Not a
# retry or a deferral: they make the unit claimable again, and a rewrite would overwrite the same worker's
# next attempt (same owner); lost, they leave the unit ``calling`` by its worker, which defers it (nothing
# was sent) or, if it died, hands it to the ambiguity policy. Nor a reconcile timer.
MUST_REPLICATE = frozenset({Outcome.ACKED, Outcome.REFUSED, Outcome.UNKNOWN, Outcome.DEAD})
TextOpener = Callable[[str], str]


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): spreads retries of a whole outage."""
    return random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))  # noqa: S311 - jitter, not crypto


@dataclass(frozen=True)
class Accepted:
    sms_id: str


@dataclass(frozen=True)
class Refused:
    status_id: int
    reason: str


@dataclass(frozen=True)
class Unavailable:
    reason: str
    cause: str  # a metric label: server_error, rate_limited, connect_error, timeout, ...
    retry_after: float | None


@dataclass(frozen=True)
class Lost:
    reason: str
    cause: str


Answer = Accepted | Refused | Unavailable | Lost


@dataclass
class Attempt:
    job: Send
    started: float = field(default_factory=time.perf_counter)

    @property
    def count(self) -> int:
        return len(self.job.numbers)


@dataclass
class Dispatcher:
    settings: Settings
    store: Dispatch
    deliveries: Deliveries
    ubill: UbillClient
    breaker: CircuitBreaker
    metrics: WorkerMetrics
    open_text: TextOpener | None = None  # decrypts sealed texts (verification codes)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Units of this process whose request may have left without its outcome being recorded. A unit claimed
    # by this process and not in here sent nothing, so it may go again without the ambiguity policy.
    in_doubt: set[str] = field(default_factory=set)
    # Units this process saw uBill accept (unit id -> smsID), newest last, capped. If Redis loses that record
    # (a failover's asynchronous replication) and the unit comes back to this process, the acceptance is
    # recorded again instead of sending again.
    accepted: OrderedDict[str, str] = field(default_factory=OrderedDict)

    async def run(self, job: Job) -> str:
        if isinstance(job, Send | Mine) and job.unit_id in self.accepted:
            return await self._accepted_before(job)
        if isinstance(job, Send) and not job.replicated:
            self.metrics.retries.labels(job.lane, "claim_not_replicated").inc()
            due = now_ms() + CLAIM_RETRY_MS
            reason = "the claim is not on the replicas yet (WAIT); nothing was sent"
            await self._settle(job, Outcome.DEFER, reason=reason, next_at_ms=due)
            return "deferred"
        if isinstance(job, Send):
            return await self.send(job)
        if isinstance(job, Mine):
            if job.unit_id in self.in_doubt:
                return await self._ambiguous(
                    job, job.expires_ms, job.numbers, "this worker's call was cut short"
                )
            await self._settle(job, Outcome.DEFER, reason="claim answer lost with Redis; nothing was sent")
            return "deferred"
        if isinstance(job, Orphaned):
            reason = f"an earlier attempt died mid-call ({job.previous_owner})"
            return await self._ambiguous(job, job.expires_ms, job.numbers, reason)
        if isinstance(job, Reconcile):
            return await self.reconcile(job)
        return self.run_expired(job)

    async def _accepted_before(self, job: Send | Mine) -> str:
        sms_id = self.accepted[job.unit_id]
        log.warning("dispatch.acceptance_recorded_again", sms_id=sms_id)
        await self._settle(job, Outcome.ACKED, sms_id=sms_id, reconcile_after=self.settings.reconcile_after)
        return "submitted"

    def _remember(self, unit_id: str, sms_id: str) -> None:
        self.accepted[unit_id] = sms_id
        self.accepted.move_to_end(unit_id)
        while len(self.accepted) > ACCEPTED_MEMORY:
            self.accepted.popitem(last=False)

    async def send(self, job: Send) -> str:
        if self.breaker.blocked():
            self.metrics.retries.labels(job.lane, "breaker_open").inc()
            due = now_ms() + int((self.breaker.remaining() + random.uniform(0.05, 0.5)) * 1000)  # noqa: S311
            await self._settle(job, Outcome.DEFER, reason="circuit breaker open", next_at_ms=due)
            return "deferred"
        attempt = Attempt(job)
        self.in_doubt.add(job.unit_id)
        answer = await self._call(attempt)
        outcome = await self._record(attempt, answer)
        self.in_doubt.discard(job.unit_id)
        return outcome

    async def _call(self, attempt: Attempt) -> Answer:
        """The uBill call; every way it can end becomes one typed answer, here and nowhere else."""
        job = attempt.job
        try:
            text = self._text(job)
            sms_id = await self.ubill.send(
                list(job.numbers), text, job.brand_id, otp=job.lane == "otp", stop_list=job.stop_list
            )
        except ProviderRefused as exc:
            answer: Answer = Refused(exc.status_id, exc.reason)
            self.breaker.success()
        except ProviderUnavailable as exc:
            answer = Unavailable(exc.reason, exc.outcome, exc.retry_after)
            self.breaker.failure()
        except ProviderOutcomeUnknown as exc:
            answer = Lost(exc.reason, exc.outcome)
            self.breaker.failure()
        else:
            answer = Accepted(sms_id or "")
            self.breaker.success()
        cause = "accepted" if isinstance(answer, Accepted) else _cause(answer)
        self.metrics.ubill_requests.labels("send", cause).inc()
        self.metrics.ubill_duration.labels("send").observe(time.perf_counter() - attempt.started)
        return answer

    def _text(self, job: Send) -> str:
        if not job.sealed:
            return job.text
        if self.open_text is None:
            raise ProviderRefused(0, "sealed text but no verification secret on this worker")
        return self.open_text(job.text)

    async def _record(self, attempt: Attempt, answer: Answer) -> str:
        job = attempt.job
        if isinstance(answer, Accepted):
            self._remember(job.unit_id, answer.sms_id)
            await self._settle(
                job, Outcome.ACKED, sms_id=answer.sms_id, reconcile_after=self.settings.reconcile_after
            )
            self._observe_dispatch(job)
            self.metrics.recipients.labels(job.lane, "submitted").inc(attempt.count)
            log.info(
                "dispatch.submitted",
                count=attempt.count,
                sms_id=answer.sms_id,
                attempt=job.tries + 1,
                duration_ms=round((time.perf_counter() - attempt.started) * 1000, 1),
            )
            return "submitted"
        if isinstance(answer, Refused):
            await self._settle(job, Outcome.REFUSED, reason=answer.reason)
            self.metrics.recipients.labels(job.lane, "rejected").inc(attempt.count)
            self._observe_final(job.lane, "rejected", job.created_ms, attempt.count)
            log.info(
                "dispatch.rejected", count=attempt.count, status_id=answer.status_id, reason=answer.reason
            )
            return "rejected"
        if isinstance(answer, Unavailable):
            return await self._retry(
                job, job.tries, job.expires_ms, job.numbers, answer.reason, answer.cause, answer.retry_after
            )
        return await self._ambiguous(job, job.expires_ms, job.numbers, answer.reason)

    async def _retry(
        self,
        unit: UnitRef,
        tries: int,
        expires_ms: int,
        numbers: tuple[str, ...],
        reason: str,
        cause: str,
        retry_after: float | None = None,
    ) -> str:
        attempt = tries + 1
        lane = unit.lane
        if attempt >= self.settings.max_attempts:
            reason = f"retries exhausted after {attempt} attempts: {reason}"
            await self._settle(unit, Outcome.DEAD, reason=reason)
            self.metrics.dead_letters.labels(lane).inc()
            self.metrics.recipients.labels(lane, "dead").inc(len(numbers))
            log.warning("dispatch.dead_letter", attempts=attempt, reason=reason)
            return "dead"
        delay = max(backoff(attempt, self.settings.retry_base, self.settings.retry_cap), retry_after or 0.0)
        # Never past validity: the last retry lands at expires_at, where the take script expires what is left.
        due = min(now_ms() + int(delay * 1000), max(now_ms(), expires_ms))
        await self._settle(unit, Outcome.RETRY, reason=reason, next_at_ms=due)
        self.metrics.retries.labels(lane, cause).inc()
        self.metrics.recipients.labels(lane, "retried").inc(len(numbers))
        log.info("dispatch.retry", attempt=attempt, reason=reason, defer_s=round(delay, 3))
        return "retry"

    async def _ambiguous(self, unit: UnitRef, expires_ms: int, numbers: tuple[str, ...], reason: str) -> str:
        """The request may have reached uBill: retry only where a duplicate beats a miss (OTP by default)."""
        lane = unit.lane
        if lane in self.settings.ambiguous_retry_lanes and now_ms() < expires_ms:
            tries = unit.tries if isinstance(unit, Send | Mine | Orphaned) else 0
            return await self._retry(
                unit, tries, expires_ms, numbers, f"outcome unknown, retried by policy: {reason}", "ambiguous"
            )
        settled = await self._settle(unit, Outcome.UNKNOWN, reason=f"outcome unknown: {reason}")
        self.metrics.recipients.labels(lane, "unknown").inc(settled.moved)
        log.warning("dispatch.unknown", reason=reason)
        return "unknown"

    async def reconcile(self, job: Reconcile) -> str:
        """Settle what uBill's report knows for a unit whose callbacks did not all come; look again later."""
        started = time.perf_counter()
        try:
            lines = await self.ubill.report(job.sms_id)
        except ProviderError as exc:
            self.metrics.ubill_requests.labels("report", exc.outcome).inc()
            lines = []
        else:
            self.metrics.ubill_requests.labels("report", "accepted").inc()
        finally:
            self.metrics.ubill_duration.labels("report").observe(time.perf_counter() - started)
        try:
            for number, code in lines:
                if number in job.numbers and code in (0, 1, 2, 3, 4):
                    await self.deliveries.apply(job.sms_id, number, code, now_ms())
        except StoreUnavailable as exc:  # an outage, not a bug: the unit's lease brings it back, read again
            log.warning("dispatch.reconcile_waiting_for_redis", error=str(exc))
            return "deferred"
        age = now_ms() - job.acked_ms
        delay = min(RECONCILE_MAX_DELAY_MS, max(int(self.settings.reconcile_after * 1000), age // 2))
        await self._settle(job, Outcome.RECONCILED, next_at_ms=now_ms() + delay)
        return "reconciled"

    def run_expired(self, job: Expired) -> str:
        """Nothing to run: the take script expired it; count it."""
        if job.count:
            self.metrics.recipients.labels(job.lane, "expired").inc(job.count)
            self._observe_final(job.lane, "expired", job.created_ms, job.count)
        return "expired"

    async def _settle(
        self,
        unit: UnitRef,
        outcome: Outcome,
        *,
        sms_id: str = "",
        reason: str = "",
        next_at_ms: int = 0,
        reconcile_after: float = 0,
    ) -> Settled:
        """Record an outcome. A known answer must be recorded: Redis outages (refused connections, OOM,
        MISCONF, READONLY...) are waited out as long as it takes; only a shutdown past its grace ends it.
        With SMSGW_REDIS_WAIT_REPLICAS, what uBill answered is written again until the replicas confirm it:
        a failover before they have it would hand the unit out as never answered (sent twice)."""
        next_at_ms = next_at_ms or now_ms()
        settled = await self._settle_once(unit, outcome, sms_id, reason, next_at_ms, reconcile_after)
        # Only what this settle wrote is confirmed: a stale one wrote nothing (another attempt owns the unit,
        # which a rewrite must never overwrite), except an acceptance, which is recorded whoever owns it.
        wrote = settled.state == "ok" or (settled.state == "stale" and outcome is Outcome.ACKED)
        pause = 0.1
        again = settled
        while wrote and not again.replicated and again.state != "gone" and outcome in MUST_REPLICATE:
            self.metrics.settles_unconfirmed.labels(unit.lane, outcome.value).inc()
            log.warning("dispatch.settle_not_replicated", outcome=outcome.value, pause_s=pause)
            await asyncio.sleep(pause)
            pause = min(2.0, pause * 2)
            again = await self._settle_once(unit, outcome, sms_id, reason, next_at_ms, reconcile_after)
        return settled

    async def _settle_once(
        self,
        unit: UnitRef,
        outcome: Outcome,
        sms_id: str,
        reason: str,
        next_at_ms: int,
        reconcile_after: float,
    ) -> Settled:
        pause = 0.1
        while True:
            try:
                return await self.store.settle(
                    unit,
                    outcome,
                    sms_id=sms_id,
                    reason=reason,
                    next_at_ms=next_at_ms,
                    reconcile_after=reconcile_after,
                )
            except (StoreUnavailable, redis.exceptions.RedisError) as exc:
                # An outage, or an error reply nobody listed as one (an ACL that denies scripts, say): Redis
                # not doing its job either way. Dropping the answer would leave the unit to the ambiguity
                # policy, which sends an OTP again: it is held and written again until Redis takes it.
                if isinstance(exc, StoreUnavailable):
                    log.warning("dispatch.settle_waiting_for_redis", outcome=outcome.value, error=str(exc))
                else:
                    log.exception("dispatch.settle_failed_holding_answer", outcome=outcome.value)
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)

    def _observe_final(self, lane: str, status: str, created_ms: int, count: int) -> None:
        if created_ms:
            elapsed = max(0.0, (now_ms() - created_ms) / 1000)
            for _ in range(count):
                self.metrics.final_latency.labels(lane, status).observe(elapsed)

    def _observe_dispatch(self, job: Send) -> None:
        start = job.send_at_ms if job.send_at_ms is not None else job.created_ms
        latency = max(0.0, (now_ms() - start) / 1000)
        for _ in job.numbers:
            self.metrics.dispatch_latency.labels(job.lane).observe(latency)


def _cause(answer: Answer) -> str:
    if isinstance(answer, Refused):
        return "refused"
    if isinstance(answer, Unavailable | Lost):
        return answer.cause
    return "accepted"
