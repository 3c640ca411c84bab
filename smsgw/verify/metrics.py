"""Phone verification metrics, registered in the gateway's registry (``smsgw_verification_*``).

Labels stay bounded: clients are configured, statuses and reasons are fixed lists, and conversion per prefix
is a histogram (how many prefixes convert how well) instead of one series per prefix.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["BLOCK_REASONS", "VerifyMetrics"]

# Why a send was refused: the abuse windows, the pumping guard (a new block, or an existing one), and the
# verification's own rules.
BLOCK_REASONS = ("number", "prefix", "client", "fraud_suspected", "cooldown", "sends_limit")
CONVERSION_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class VerifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.started = Counter(
            "smsgw_verification_started_total",
            "Verifications created (201), by client.",
            ["client"],
            registry=registry,
        )
        self.finished = Counter(
            "smsgw_verification_finished_total",
            "Verifications that reached a final status (approved, failed, expired), by client.",
            ["client", "status"],
            registry=registry,
        )
        self.sends = Counter(
            "smsgw_verification_sms_total",
            "Verification SMS accepted for sending, by client and kind (create, resend).",
            ["client", "kind"],
            registry=registry,
        )
        self.checks = Counter(
            "smsgw_verification_checks_total",
            "Code checks, by client and outcome (approved, wrong, failed, final: of a final verification).",
            ["client", "outcome"],
            registry=registry,
        )
        self.blocked = Counter(
            "smsgw_verification_blocked_total",
            "Sends refused with 429, by client and reason (number, prefix, client: abuse windows; "
            "fraud_suspected: the pumping guard; cooldown, sends_limit: a verification's resends).",
            ["client", "reason"],
            registry=registry,
        )
        self.prefix_blocks = Counter(
            "smsgw_verification_prefix_blocks_total",
            "Prefixes newly blocked by the pumping guard (many started, few approved).",
            registry=registry,
        )
        self.safe_listed = Counter(
            "smsgw_verification_safe_listed_total",
            "Verifications to safe-listed numbers (no abuse limit applied), by client.",
            ["client"],
            registry=registry,
        )
        self.conversion = Histogram(
            "smsgw_verification_prefix_conversion_ratio",
            "Approved / started in the guard window of the prefix of each new verification, observed when "
            "the prefix had at least half the guard's minimum of starts.",
            buckets=CONVERSION_BUCKETS,
            registry=registry,
        )
        self.blocked_prefixes = Gauge(
            "smsgw_verification_blocked_prefixes",
            "Prefixes blocked by the pumping guard right now (read from Redis by the expiry sweep).",
            registry=registry,
        )
