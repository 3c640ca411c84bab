"""Abuse limits and the pumping guard: what the Lua scripts are given, and what their refusals answer.

The state lives in Redis, shared by every gateway replica, each key expiring with its window:

- **Sliding windows** of SMS (creates and resends alike) per number, per prefix (the number without its last
  4 digits) and per client: a sorted-set log per window (``store.verifications.keys``), exact, bounded.
- **The pumping guard** per prefix: verifications started in the guard window against those approved. When a
  prefix has at least ``guard_min_started`` starts and under ``guard_min_conversion`` of them approved, it
  is blocked for ``guard_block`` seconds (``429`` with problem type ``…/fraud-suspected``). SMS pumping
  (toll fraud) looks exactly like that: many codes sent to numbers in ranges the fraudster earns from, none
  ever entered. Legitimate traffic converts (typically 60-80 %), so its prefixes stay clear; the verifications
  counted are those started before the current one, so the block starts with the first refused send.
- **The safe list** (testers) skips all of it.

Every refusal is a metric (``smsgw_verification_blocked_total{reason}``) and a log line; the number in it
is masked.
"""

from __future__ import annotations

import math
from typing import Any

from smsgw.errors import ProblemError, TooManyRequests
from smsgw.verify.config import VerifySettings

__all__ = ["FraudSuspected", "guard_args", "refusal", "window_args"]


class FraudSuspected(TooManyRequests):
    status, slug, title = (
        429,
        "fraud-suspected",
        "Sending to this number range is paused (SMS pumping suspected)",
    )


def window_args(cfg: VerifySettings) -> list[list[int]]:
    """[[count, window_ms]] for number, prefix and client, in that order (the scripts' order)."""
    return [[lim.count, lim.window * 1000] for lim in (cfg.number_limit, cfg.prefix_limit, cfg.client_limit)]


def guard_args(cfg: VerifySettings) -> list[Any]:
    return [cfg.guard_min_started, cfg.guard_min_conversion, cfg.guard_window * 1000, cfg.guard_block * 1000]


def _seconds(ms: Any) -> int:
    return max(1, math.ceil(int(ms) / 1000))


def refusal(result: list[Any], cfg: VerifySettings) -> tuple[str, ProblemError]:
    """The metric reason and the 429 of a script's refusal (``blocked``, ``guard``, ``limited``,
    ``cooldown``, ``sends``)."""
    kind = str(result[0])
    if kind in ("blocked", "guard"):
        return "fraud_suspected", FraudSuspected(
            "too many verifications to this number range were never completed; sending to it is paused",
            retry_after=_seconds(result[1]),
        )
    if kind == "limited":
        which = str(result[1])
        limit = {"number": cfg.number_limit, "prefix": cfg.prefix_limit, "client": cfg.client_limit}[which]
        whom = {"number": "this number", "prefix": "this number range", "client": "this client"}[which]
        detail = f"at most {limit.count} verification SMS per {limit.window} s to {whom}"
        return which, TooManyRequests(detail, retry_after=_seconds(result[2]))
    if kind == "cooldown":
        return "cooldown", TooManyRequests(
            f"a code may be resent {cfg.resend_cooldown} s after the last one",
            retry_after=_seconds(result[1]),
        )
    if kind == "sends":
        return "sends_limit", TooManyRequests(
            f"a verification sends its code at most {cfg.max_sends} times; start a new one after it expires",
            retry_after=_seconds(result[1]),
        )
    raise ValueError(f"not a refusal: {kind}")
