"""Every Prometheus metric, named by convention: ``smsgw_`` prefix, base units, ``_total`` counters.

Each process builds its own registry (so tests can run several apps in one interpreter); queue gauges are
refreshed from Redis right before a scrape is rendered (``refresh`` callbacks), never on a timer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "GatewayMetrics", "UbillBalance", "WorkerMetrics", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FAST_BUCKETS = (
    0.002,
    0.005,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
SLOW_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0)


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def _final_latency(registry: CollectorRegistry, which: str) -> Histogram:
    """One series in Prometheus: gateways observe the callback-driven final statuses, workers their own."""
    return Histogram(
        "smsgw_final_status_latency_seconds",
        f"From acceptance to a recipient's final status (in this process: {which}).",
        ["lane", "status"],
        buckets=SLOW_BUCKETS,
        registry=registry,
    )


class GatewayMetrics:
    """The HTTP edge: requests, accepted recipients, callbacks and final statuses."""

    def __init__(self) -> None:
        r = self.registry = _registry()
        self.requests = Counter(
            "smsgw_http_requests_total",
            "HTTP requests answered, by route, method, status and client.",
            ["route", "method", "status", "client"],
            registry=r,
        )
        self.request_duration = Histogram(
            "smsgw_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route", "method"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.accepted = Counter(
            "smsgw_recipients_accepted_total",
            "Recipients accepted (202) by lane and client.",
            ["lane", "client"],
            registry=r,
        )
        self.idempotent_replays = Counter(
            "smsgw_idempotent_replays_total",
            "POST /v1/messages answered from an Idempotency-Key record.",
            ["client"],
            registry=r,
        )
        self.rate_limited = Counter(
            "smsgw_client_rate_limited_total",
            "Requests refused with 429 by a client's rate limit.",
            ["client"],
            registry=r,
        )
        self.callbacks = Counter(
            "smsgw_callbacks_total",
            "uBill delivery callbacks by reported status and outcome "
            "(applied, duplicate, orphaned, adopted, bad_key, forbidden_ip, bad_request).",
            ["status", "outcome"],
            registry=r,
        )
        self.final_latency = _final_latency(r, "uBill's callbacks: delivered, failed, error")
        self.redis_errors = Counter(
            "smsgw_redis_errors_total", "Requests that found Redis unavailable (answered 503).", registry=r
        )
        self.redis_durable = Gauge(
            "smsgw_redis_durable",
            "1 when Redis runs AOF with appendfsync always (read at start and by /readyz), else 0.",
            registry=r,
        )
        self.sse_clients = Gauge("smsgw_event_stream_clients", "Open GET /v1/events streams.", registry=r)
        self.sse_refused = Counter(
            "smsgw_event_streams_refused_total",
            "GET /v1/events refused with 429 by the per-client or per-process stream cap (limit).",
            ["client", "limit"],
            registry=r,
        )
        self.sse_too_slow = Counter(
            "smsgw_event_streams_too_slow_total",
            "Event streams ended because their reader fell a whole buffer behind (they resume by id).",
            ["client"],
            registry=r,
        )
        self.brand_usable = Gauge(
            "smsgw_brand_usable",
            "1 when uBill's last brand reading shows a configured brand approved, 0 when uBill does not "
            "know it or has not approved it (sends refused); absent without a recent reading.",
            ["brand"],
            registry=r,
        )


class WorkerMetrics:
    """The dispatch side: uBill calls, lanes, retries, breaker, balance and queue state."""

    def __init__(self) -> None:
        r = self.registry = _registry()
        self.dispatch_latency = Histogram(
            "smsgw_dispatch_latency_seconds",
            "From acceptance (or send_at) to uBill's acceptance of the recipient's call, by lane.",
            ["lane"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.ubill_requests = Counter(
            "smsgw_ubill_requests_total",
            "uBill API calls by endpoint and outcome (accepted, refused, server_error, rate_limited, "
            "connect_error, timeout, disconnected, bad_answer).",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.ubill_duration = Histogram(
            "smsgw_ubill_request_duration_seconds",
            "Duration of uBill API calls.",
            ["endpoint"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.recipients = Counter(
            "smsgw_dispatch_recipients_total",
            "Recipients leaving a dispatch attempt, by lane and outcome "
            "(submitted, rejected, expired, cancelled, unknown, retried, dead).",
            ["lane", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "smsgw_dispatch_retries_total",
            "Dispatch units rescheduled after a failed attempt, by reason.",
            ["lane", "reason"],
            registry=r,
        )
        self.settles_unconfirmed = Counter(
            "smsgw_dispatch_settles_unconfirmed_total",
            "Settles written again because the replicas did not confirm them (SMSGW_REDIS_WAIT_REPLICAS).",
            ["lane", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "smsgw_dead_letters_total", "Dispatch units that exhausted their retries.", ["lane"], registry=r
        )
        self.final_latency = _final_latency(r, "the worker's own: rejected, expired, failed")
        self.breaker_state = Gauge(
            "smsgw_circuit_breaker_state", "uBill circuit breaker: 0 closed, 1 half-open, 2 open.", registry=r
        )
        self.rate_wait = Counter(
            "smsgw_rate_limit_wait_seconds_total",
            "Time dispatch units waited for uBill capacity, by lane.",
            ["lane"],
            registry=r,
        )
        self.jobs_running = Gauge(
            "smsgw_worker_jobs_running",
            "Dispatch units being worked on in this process, by lane.",
            ["lane"],
            registry=r,
        )
        self.balance = UbillBalance(r)
        self.queue_units = Gauge(
            "smsgw_queue_units",
            "Dispatch units due and waiting for a worker in a lane (a unit being called is not due: its "
            "lease is a timer).",
            ["lane"],
            registry=r,
        )
        self.queue_scheduled = Gauge(
            "smsgw_queue_scheduled_units",
            "Dispatch units whose timer is in the future: send_at, retry backoff, a running unit's lease, a "
            "reconciliation.",
            ["lane"],
            registry=r,
        )
        self.queue_oldest_age = Gauge(
            "smsgw_queue_oldest_age_seconds",
            "How long the oldest due unit of a lane has been waiting.",
            ["lane"],
            registry=r,
        )
        self.dead_letter_units = Gauge(
            "smsgw_dead_letter_units", "Dead letters kept for inspection and replay.", registry=r
        )
        self.foreign_callbacks = Counter(
            "smsgw_callbacks_foreign_total",
            "Kept callbacks whose smsID was never recorded within SMSGW_ORPHAN_TTL: sends this gateway "
            "never made (other integrations on the same uBill account); they changed nothing.",
            registry=r,
        )
        self.orphan_callbacks = Gauge(
            "smsgw_orphan_callback_sms_ids",
            "smsIDs with callbacks kept until their send is recorded.",
            registry=r,
        )


class UbillBalance(Collector):
    """uBill's balance and the age of its reading, exported only once a reading exists.

    A plain gauge reads 0 before the first successful poll, and for ever when polling is off or keeps failing:
    an empty account with a fresh reading, to a dashboard and to the low-balance alert. Absent series say
    "unknown" instead. The age is computed at scrape time from the reading's own time, so it keeps growing
    while polls fail.
    """

    BALANCE = "smsgw_ubill_balance_sms"
    AGE = "smsgw_ubill_balance_age_seconds"

    def __init__(self, registry: CollectorRegistry) -> None:
        self._reading: tuple[float, float] | None = None  # (SMS, unix time of the reading)
        registry.register(self)

    def set(self, sms: float, at: float) -> None:
        """A successful reading of ``sms`` taken at unix time ``at`` (seconds)."""
        self._reading = (sms, at)

    def describe(self) -> list[Metric]:
        return [self._balance(), self._age()]

    def collect(self) -> list[Metric]:
        if self._reading is None:
            return []
        sms, at = self._reading
        return [self._balance(sms), self._age(max(0.0, time.time() - at))]

    def _balance(self, value: float | None = None) -> GaugeMetricFamily:
        help_text = (
            "uBill balance in SMS, from the last successful balance reading (absent until one exists)."
        )
        return GaugeMetricFamily(self.BALANCE, help_text, value=value)

    def _age(self, value: float | None = None) -> GaugeMetricFamily:
        help_text = "Age of the last successful uBill balance reading (absent until one exists)."
        return GaugeMetricFamily(self.AGE, help_text, value=value)


async def render(registry: CollectorRegistry, refresh: Callable[[], Awaitable[None]] | None = None) -> bytes:
    """The text exposition, after refreshing the gauges that are read from Redis at scrape time."""
    if refresh is not None:
        await refresh()
    return generate_latest(registry)
