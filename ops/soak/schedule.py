"""The fault schedule: which fault starts when and for how long, drawn from the seed alone.

Faults run on independent timelines (Redis and the network to it; the product's processes; uBill; uBill's
callbacks), so a Redis fault never overlaps another Redis fault (each is undone before the next), while a
worker kill may well land during a Redis outage. Every kind of the topology appears at least once in every
run, however short; a long run cycles through them again in a fresh order each time.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ops.soak.config import JOB_LEASE, REDIS_TIMEOUT

__all__ = ["KINDS", "Fault", "build_schedule", "describe"]

REDIS_SINGLE: Final = (
    "redis-kill",
    "redis-stop",
    "proxy-delay",
    "proxy-cut",
    "proxy-blackhole",
    "redis-oom",
    "redis-misconf",
    "redis-readonly",
)
REDIS_SENTINEL: Final = ("sentinel-failover", "primary-kill", "redis-stop", "redis-oom", "redis-misconf")
PROCESSES: Final = ("worker-kill", "worker-term", "gateway-kill")
UBILL: Final = ("ubill-5xx", "ubill-429", "ubill-stall", "ubill-drop", "ubill-accept-5xx")
CALLBACKS: Final = ("callback-duplicate", "callback-reorder", "callback-early", "callback-foreign")
# Seconds between two faults of one timeline: (process timeline?, short run?) -> range. Restarted processes
# need a moment to start (Python, on a busy 2-core machine), so process faults are spaced further apart.
_GAPS: Final = {
    (False, True): (0.5, 1.5),
    (True, True): (3.0, 6.0),
    (False, False): (3.0, 15.0),
    (True, False): (8.0, 30.0),
}
KINDS: Final = tuple(dict.fromkeys(REDIS_SINGLE + REDIS_SENTINEL + PROCESSES + UBILL + CALLBACKS))


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the workload started
    kind: str
    duration: float
    params: dict[str, Any] = field(default_factory=dict)


def _params(kind: str, rng: random.Random) -> dict[str, Any]:
    if kind == "proxy-delay":
        return {"delay": round(rng.uniform(REDIS_TIMEOUT + 0.1, REDIS_TIMEOUT * 3), 2)}
    if kind in ("worker-kill", "worker-term", "gateway-kill"):
        return {"target": rng.randrange(2)}
    if kind == "ubill-5xx":
        return {"error_rate": round(rng.uniform(0.3, 0.8), 2)}
    if kind == "ubill-429":
        return {"rate_limited_rate": round(rng.uniform(0.3, 0.8), 2)}
    if kind == "ubill-stall":
        return {"stall_rate": round(rng.uniform(0.1, 0.4), 2)}
    if kind == "ubill-drop":
        return {"drop_rate": round(rng.uniform(0.1, 0.4), 2)}
    if kind == "ubill-accept-5xx":
        return {"accept_error_rate": round(rng.uniform(0.1, 0.4), 2)}
    if kind == "callback-duplicate":
        return {"duplicate_rate": round(rng.uniform(0.3, 0.9), 2)}
    if kind == "callback-reorder":
        return {"reorder_rate": round(rng.uniform(0.3, 0.9), 2)}
    if kind == "callback-foreign":
        return {"per_second": rng.choice((2, 4, 8))}
    return {}


def _duration(kind: str, rng: random.Random, short: bool) -> float:
    if kind == "redis-stop":  # longer than the job lease, by definition of the fault
        return round(JOB_LEASE + rng.uniform(1.0, 2.0 if short else 4.0), 2)
    if kind in ("redis-kill", "primary-kill", "worker-kill", "gateway-kill", "worker-term"):
        return round(rng.uniform(0.5, 1.5 if short else 3.0), 2)  # time down before the restart
    if kind == "sentinel-failover":
        return 5.0  # let the failover finish before the next Redis fault
    return round(rng.uniform(1.5, 3.0) if short else rng.uniform(2.0, 8.0), 2)


def _timeline(
    kinds: Sequence[str], rng: random.Random, duration: float, short: bool, start: float
) -> list[Fault]:
    faults: list[Fault] = []
    at = start
    gap = _GAPS[(kinds is PROCESSES, short)]
    cycle = 0
    while True:
        order = list(kinds)
        rng.shuffle(order)
        for kind in order:
            length = _duration(kind, rng, short)
            if cycle > 0 and at + length > duration:
                return faults
            faults.append(Fault(round(at, 2), kind, length, _params(kind, rng)))
            at += length + rng.uniform(*gap)
        cycle += 1
        if at >= duration:
            return faults


def build_schedule(seed: int, duration: float, topology: str, short: bool) -> list[Fault]:
    """Every fault of the run, by start time; the same seed gives the same schedule."""
    rng = random.Random(f"faults-{seed}")
    redis = REDIS_SENTINEL if topology == "sentinel" else REDIS_SINGLE
    faults: list[Fault] = []
    for kinds in (redis, PROCESSES, UBILL, CALLBACKS):
        faults += _timeline(kinds, rng, duration, short, start=rng.uniform(1.0, 3.0))
    return sorted(faults, key=lambda f: (f.at, f.kind))


def describe(faults: Sequence[Fault]) -> str:
    lines = [
        f"  t+{f.at:7.2f}s  {f.kind:<20} {f.duration:5.2f}s  "
        + " ".join(f"{k}={v}" for k, v in sorted(f.params.items()))
        for f in faults
    ]
    return "\n".join(lines)
