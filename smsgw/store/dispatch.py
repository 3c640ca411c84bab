"""The worker's side of the store: take due units (claimed and leased), settle attempts, keep leases alive.

A unit has one timer in its lane (a sorted set) from acceptance until it is finished; its score is the next
moment a worker must look at it. Taking a unit moves the timer to now + lease, so a unit whose worker dies is
due again after the lease; the heartbeat (``beat``) keeps it ahead while the worker runs it, and settling sets
it to what comes next (a retry, reconciliation, nothing). A worker also beats its own liveness record, which
is how ``take`` tells a worker that died mid-call from one Redis could not hear for a while.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from smsgw.clock import iso, now_ms
from smsgw.store import keys
from smsgw.store.batching import ScriptBatcher
from smsgw.store.connection import translated
from smsgw.store.scripts import Scripts

__all__ = [
    "Capacity",
    "Dispatch",
    "Expired",
    "Job",
    "Mine",
    "Orphaned",
    "Outcome",
    "Reconcile",
    "Send",
    "Settled",
    "Taken",
]


class Outcome(enum.StrEnum):
    """How an attempt ended, as the settle script records it."""

    ACKED = "acked"  # uBill accepted: recipients submitted
    REFUSED = "refused"  # uBill refused (statusID != 0): rejected, never retried
    RETRY = "retry"  # nothing was sent (or it is OTP policy to send again): queued again, an attempt spent
    DEFER = "defer"  # nothing was tried (breaker open, a lost claim answer): queued again, no attempt spent
    UNKNOWN = "unknown"  # the request may have reached uBill: never blindly resent
    DEAD = "dead"  # retries exhausted: failed, a dead letter
    RECONCILED = "reconciled"  # uBill's report was read: look again later if needed


@dataclass(frozen=True)
class UnitRef:
    unit_id: str
    lane: str

    @property
    def message_id(self) -> str:
        return keys.split_unit_id(self.unit_id)[0]

    @property
    def k(self) -> int:
        return keys.split_unit_id(self.unit_id)[1]


@dataclass(frozen=True)
class Send(UnitRef):
    """A claimed unit: its numbers are ``dispatching`` and no request has left yet."""

    tries: int
    client: str
    brand_id: int
    text: str
    sealed: bool
    stop_list: bool
    created_ms: int
    send_at_ms: int | None
    expires_ms: int
    numbers: tuple[str, ...]
    # False when the claim was not confirmed on the replicas in time (SMSGW_REDIS_WAIT_REPLICAS): a failover
    # could hand the unit out again, so nothing may be sent on this claim.
    replicated: bool = True


@dataclass(frozen=True)
class Mine(UnitRef):
    """A unit this process claimed earlier (its answer to ``take`` was lost, or the attempt was cut short)."""

    tries: int
    expires_ms: int
    created_ms: int
    numbers: tuple[str, ...]


@dataclass(frozen=True)
class Orphaned(UnitRef):
    """A unit whose worker is provably gone mid-call; this worker has taken the attempt over."""

    previous_owner: str
    tries: int
    expires_ms: int
    created_ms: int
    numbers: tuple[str, ...]


@dataclass(frozen=True)
class Reconcile(UnitRef):
    """An accepted unit whose callbacks did not all come: ask uBill's report."""

    sms_id: str
    acked_ms: int
    numbers: tuple[str, ...]


@dataclass(frozen=True)
class Expired(UnitRef):
    """Validity ran out before dispatch: recipients ``expired`` (already recorded by ``take``)."""

    count: int
    created_ms: int


Job = Send | Mine | Orphaned | Reconcile | Expired


@dataclass(frozen=True)
class Capacity:
    """uBill's shared rate (0 = unlimited) and each lane's share; see ``lua/take.lua``."""

    calls: int
    numbers: int
    shares: dict[str, float]

    def as_json(self) -> str:
        if not (self.calls or self.numbers):
            return ""
        return orjson.dumps({"calls": self.calls, "numbers": self.numbers, "shares": self.shares}).decode()


NO_TIMER = float("inf")


@dataclass(frozen=True)
class Taken:
    """What one take brought: the jobs; seconds to wait for uBill capacity when that stopped it (0 if not);
    and when nothing more was due, seconds until the lane's next timer (None: none, or more may be due)."""

    jobs: list[Job]
    capacity_wait: float
    idle: float | None


@dataclass(frozen=True)
class Settled:
    state: str  # ok | gone | stale
    moved: int
    tries: int
    # False when WAIT (SMSGW_REDIS_WAIT_REPLICAS) did not confirm the write on the replicas in time: a
    # failover could lose it, so the worker writes it again (``Dispatcher._settle``).
    replicated: bool = True


def _job(lane: str, raw: list[Any]) -> Job:
    kind, unit = str(raw[0]), str(raw[1])
    if kind == "send":
        tries, client, brand, text, stop_list, created, send_at, expires, sealed = raw[2:11]
        return Send(
            unit,
            lane,
            int(tries),
            str(client),
            int(brand),
            str(text),
            sealed == "1",
            stop_list == "1",
            int(created),
            int(send_at) if send_at else None,
            int(expires),
            tuple(str(n) for n in raw[11:]),
        )
    if kind == "mine":
        return Mine(unit, lane, int(raw[2]), int(raw[3]), int(raw[4]), tuple(str(n) for n in raw[5:]))
    if kind == "orphaned":
        numbers = tuple(str(n) for n in raw[6:])
        return Orphaned(unit, lane, str(raw[2]), int(raw[3]), int(raw[4]), int(raw[5]), numbers)
    if kind == "reconcile":
        return Reconcile(unit, lane, str(raw[2]), int(raw[3]), tuple(str(n) for n in raw[4:]))
    if kind == "expired":
        return Expired(unit, lane, int(raw[2]), int(raw[3]))
    raise ValueError(f"unknown job kind {kind!r}")


class Dispatch:
    """One worker process's access to the lanes; ``owner`` identifies the process in unit records."""

    def __init__(
        self,
        redis: Redis,
        blocking: Redis,
        scripts: Scripts,
        *,
        owner: str,
        lease: float,
        capacity: Capacity,
        wait: tuple[int, int] | None = None,
    ) -> None:
        self._redis = redis
        self._blocking = blocking
        self._scripts = scripts
        self.owner = owner
        self.lease_ms = int(lease * 1000)
        self.grace_ms = self.lease_ms
        self._capacity = capacity.as_json()
        # Concurrent settles of one process share pipelines (batching.py: one round trip for many).
        # Opt-in HA (SMSGW_REDIS_WAIT_REPLICAS): takes and settles end with WAIT; a claim not on that many
        # replicas sends nothing (``Send.replicated``), a settle not on them is written again (``Settled``).
        self._settle = ScriptBatcher(redis, scripts.settle, wait=wait)
        self._wait_replicas = wait[0] if wait else 0
        self._take = ScriptBatcher(redis, scripts.take, wait=wait) if wait else None

    async def take(self, lane: str, want: int, window: int) -> Taken:
        """Up to ``want`` due units of ``lane`` (looking at ``window`` due timers)."""
        now = now_ms()
        args: list[str | int] = [lane, now, iso(now), want, self.lease_ms, self.owner, window, self.grace_ms]
        args.append(self._capacity)
        replicated = True
        with translated():
            if self._take is None:
                raw = await self._scripts.take(args=args)
            else:
                raw, replicas = await self._take([], args)
                replicated = replicas is not None and replicas >= self._wait_replicas
        wait = int(raw[0]) / 1000
        idle = (
            None if not raw[1] else (NO_TIMER if raw[1] == "none" else max(0.0, (float(raw[1]) - now) / 1000))
        )
        jobs = [_job(lane, item) for item in raw[2:]]
        if not replicated:
            jobs = [dataclasses.replace(j, replicated=False) if isinstance(j, Send) else j for j in jobs]
        return Taken(jobs, wait, idle)

    async def settle(
        self,
        unit: UnitRef,
        outcome: Outcome,
        *,
        sms_id: str = "",
        reason: str = "",
        next_at_ms: int = 0,
        reconcile_after: float = 0,
    ) -> Settled:
        """Record an attempt's end (and the unit's next timer) in one script."""
        now = now_ms()
        reconcile_at = now + int(reconcile_after * 1000)
        args: list[str | int] = [unit.message_id, unit.k, outcome.value, now, iso(now), self.owner, sms_id]
        args += [reason, next_at_ms, reconcile_at, *getattr(unit, "numbers", ())]
        with translated():
            raw, replicas = await self._settle([], args)
        replicated = replicas is None or replicas >= self._wait_replicas
        if raw[0] in ("gone", "stale"):
            return Settled(str(raw[0]), 0, 0, replicated)
        return Settled("ok", int(raw[1]), int(raw[2]), replicated)

    async def beat(self, running: dict[str, list[str]]) -> None:
        """Liveness, and the leases of the units this process runs (``{lane: [unit id, ...]}``)."""
        with translated():
            await self._scripts.beat(
                args=[self.owner, self.grace_ms, now_ms(), self.lease_ms, orjson.dumps(running), "0"]
            )

    async def sign_off(self) -> None:
        """A clean stop: this worker is gone at once (its unfinished units are free after their lease)."""
        with translated():
            await self._scripts.beat(args=[self.owner, self.grace_ms, now_ms(), self.lease_ms, "{}", "1"])

    async def wait_for_work(self, lane: str, seconds: float) -> None:
        """Block until an accept's nudge, or ``seconds`` (the lane's next timer, capped by the caller)."""
        with translated():
            # Redis >= 6 takes a fractional timeout; redis-py types it as int.
            await self._blocking.blpop([keys.wake(lane)], timeout=max(0.001, seconds))  # type: ignore[arg-type,misc]
