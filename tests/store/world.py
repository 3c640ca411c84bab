"""A small world around the store for the stateful tests: a virtual clock, a fake uBill that records what it
accepted and which call sent what, and the constants the simulated workers run with.

Time. The scripts take "now" from their caller for timers, validity, retries and reconciliation, and read
Redis's own clock (``TIME``) for worker liveness, accept deadlines, client rates and uBill capacity windows;
Redis expires keys on its clock too. The tests replace ``now_ms`` in the store's Python modules with
``VirtualClock.now`` (``install_clock``), so every rule goes through the store's own API (``Dispatch``,
``Deliveries``, ``Messages``, ``Upkeep``) with a clock only the state machine moves: runs are reproducible
and days pass in no time. (Building the scripts' ARGV by hand would test a copy of the wrappers.) Redis's
clock cannot be set, so the machine does to Redis's data what its clock would: when it advances time by d it
ages the timestamps liveness compares (each ``smsgw:worker:*`` record's ``since|beat``) and counts every
key's TTL down by d, expiring what reaches 0; and before each step it gives back the real time the last one
took, the same way, so between steps Redis's clock stands still (``StoreMachine._redis_clock_moves``). uBill
capacity windows and demand flags are kept on the virtual clock and written in before each capped take
(``StoreMachine._capped_take``). Accept deadlines are kept far ahead (a one-hour store timeout) and client
rates are so slow that no token comes back within a run. What remains of real time is the milliseconds
within one step, and no advance lands within seconds of a boundary (``LEASE_MS``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.exceptions

from smsgw.store import delivery as deliveries_module
from smsgw.store import dispatch, messages
from smsgw.store import upkeep as upkeep_module
from smsgw.store.dispatch import Capacity
from smsgw.store.messages import ClientLimit

LANES = ("otp", "transactional", "bulk")
NUMBERS = ("995591000001", "995591000002", "995591000003", "995591000004", "995591000005")
CLIENTS = ("alpha", "beta")
LIMITS = {"beta": ClientLimit("beta", rate=1e-9, burst=4)}  # four sends, then no token for 30 years
BATCH = 2
# Also the liveness grace (Dispatch: grace = lease). No sum of advance steps comes within seconds of it: what
# the scripts compare with Redis's clock then never depends on the real milliseconds a run takes.
LEASE_S = 25.0
LEASE_MS = 25_000
RECONCILE_AFTER_S = 60.0
MAX_ATTEMPTS = (2, 2, 1)  # per worker slot: a rolling deploy may mix settings; dead letters in short runs
AMBIGUOUS_RETRY_LANES = frozenset({"otp"})
ORPHAN_TTL_S = 600  # SMSGW_ORPHAN_TTL; not a multiple of an advance, so kept lists expire apart
EVENTS_RETENTION_S = 30 * 86_400  # streams keep everything a run writes (virtual time runs ahead of ids)
DEAD_RETENTION_S = 86_400
MESSAGE_TTL_S = 40 * 86_400
STORE_TIMEOUT_S = 3_600.0  # accept deadlines (Redis clock) far ahead of any run
SCHEDULE_AHEAD_MS = 40_000
SHORT_VALIDITY_S = 45
LONG_VALIDITY_S = 86_400
WINDOW = 10
MAX_OFFSET_MS = 20 * 86_400_000  # stay far inside events retention (stream ids are Redis's real clock)
CAPACITY = Capacity(calls=2, numbers=3, shares={"otp": 0.5, "transactional": 0.3, "bulk": 0.2})
NO_CAPACITY = Capacity(calls=0, numbers=0, shares={})

_CLOCKED = (dispatch, deliveries_module, messages, upkeep_module)

# What d ms on Redis's clock does to what Redis keeps, in one round trip (a test helper, not the product's):
# liveness timestamps age (the beats of workers beating throughout excepted), TTLs count down, what reaches 0
# expires. ARGV[1] d, or '' for minus the real time since ARGV[2] (Redis ms): give back what a step took.
# ARGV[3...] liveness keys of workers beating throughout. Returns {Redis's ms now, expired key, ...}.
REDIS_CLOCK_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delta = ARGV[1] ~= '' and tonumber(ARGV[1]) or tonumber(ARGV[2]) - now
local continuous = {}
for i = 3, #ARGV do continuous[ARGV[i]] = true end
local out = {tostring(now)}
if delta == 0 then return out end
for _, name in ipairs(redis.call('KEYS', '*')) do
  if string.sub(name, 1, string.len(KEYS[1])) == KEYS[1] then
    local since, beat = string.match(redis.call('GET', name), '^(%-?%d+)|(%-?%d+)$')
    since, beat = tonumber(since) - delta, tonumber(beat)
    if not continuous[name] then beat = beat - delta end
    redis.call('SET', name, string.format('%d|%d', since, beat), 'KEEPTTL')
  end
  local ttl = redis.call('PTTL', name)
  if ttl > 0 and not continuous[name] then
    if ttl - delta <= 0 then
      redis.call('DEL', name)
      out[#out + 1] = name
    else
      redis.call('PEXPIRE', name, ttl - delta)
    end
  end
end
return out
"""


class VirtualClock:
    """The store's "now" during a run: moved only by the machine."""

    def __init__(self, ms: int = 0) -> None:
        self.ms = ms

    def now(self) -> int:
        return self.ms


def install_clock(monkeypatch: pytest.MonkeyPatch, clock: VirtualClock) -> None:
    """Every store module that asks for the time asks ``clock`` (they import ``now_ms`` by name)."""
    for module in _CLOCKED:
        monkeypatch.setattr(module, "now_ms", clock.now)


def root_of(message_id: str) -> str:
    """A dead-letter replay ``{id}-r{k}`` sends for the recipients of message ``id``."""
    return message_id.split("-r", 1)[0]


# What a call looks like from both sides: (what the worker hears, whether uBill accepted and sends it).
BEHAVIOURS: dict[str, tuple[str, bool]] = {  # the usual first: Hypothesis favours (and shrinks to) early ones
    "accept": ("accepted", True),
    "refuse": ("refused", False),
    "5xx": ("unavailable", False),
    "lost-sent": ("lost", True),  # the answer was lost after uBill accepted
    "lost-unsent": ("lost", False),  # the answer was lost and uBill never got the request
    "5xx-after-accept": ("unavailable", True),  # the documented duplicate: uBill accepted, then answered 5xx
    "accept-no-id": ("accepted-no-id", True),  # statusID 0 without an smsID in the answer
}


@dataclass
class Call:
    """One request of ours to uBill, as the fake uBill saw it."""

    index: int
    unit: str
    root: str
    lane: str
    numbers: tuple[str, ...]
    answer: str
    reached: bool
    sms_id: str  # uBill's smsID when it accepted the call ('' otherwise)
    claim_step: int  # the step whose take handed the unit out for this call
    recorded_step: int | None = None  # the step whose settle recorded its acceptance


@dataclass(frozen=True)
class Callback:
    sms_id: str
    number: str
    code: int
    occurred_ms: int
    foreign: bool


@dataclass
class Ubill:
    """What uBill accepted (from us and from other integrations on the account) and the callbacks it owes."""

    calls: list[Call] = field(default_factory=list)
    ours: dict[str, tuple[str, ...]] = field(default_factory=dict)  # smsID -> numbers, accepted from us
    unit_of: dict[str, str] = field(default_factory=dict)  # our smsID -> the unit whose call it answered
    foreign: dict[str, set[str]] = field(default_factory=dict)
    status: dict[tuple[str, str], int] = field(default_factory=dict)  # (smsID, number) -> latest code
    callbacks: list[Callback] = field(default_factory=list)
    _ours_seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))
    _foreign_seq: itertools.count[int] = field(default_factory=lambda: itertools.count(90001))

    def call(self, unit: str, lane: str, numbers: tuple[str, ...], behaviour: str, claim_step: int) -> Call:
        answer, reached = BEHAVIOURS[behaviour]
        sms_id = str(next(self._ours_seq)) if reached else ""
        call = Call(
            len(self.calls),
            unit,
            root_of(unit.rsplit(":", 1)[0]),
            lane,
            numbers,
            answer,
            reached,
            sms_id,
            claim_step,
        )
        self.calls.append(call)
        if reached:
            self.ours[sms_id] = numbers
            self.unit_of[sms_id] = unit
        return call

    def new_foreign(self) -> str:
        return str(next(self._foreign_seq))

    def report(self, sms_id: str) -> list[tuple[str, int]]:
        """uBill's report for one smsID: the numbers it has a status for."""
        numbers = self.ours.get(sms_id, ())
        return [(n, self.status[(sms_id, n)]) for n in numbers if (sms_id, n) in self.status]

    def duplicate_sends(self) -> list[str]:
        """Calls uBill accepted for a (message, number) it had accepted before, that no policy excuses.

        Excused: an earlier acceptance answered 5xx (the contract calls a 5xx "not sent"; the README documents
        the duplicate), and, in a lane whose ambiguous outcomes are retried by policy (OTP), an earlier
        acceptance the gateway had not recorded when it handed the unit out again.
        """
        problems = []
        seen: dict[tuple[str, str], list[Call]] = {}
        for call in self.calls:
            if not call.reached:
                continue
            for number in call.numbers:
                earlier = seen.setdefault((call.root, number), [])
                for before in earlier:
                    if before.answer == "unavailable":
                        continue
                    unrecorded = before.recorded_step is None or before.recorded_step > call.claim_step
                    if before.lane in AMBIGUOUS_RETRY_LANES and unrecorded:
                        continue
                    problems.append(
                        f"{number} of {call.root} sent twice: call {before.index} ({before.answer}, "
                        f"smsID {before.sms_id}, recorded at step {before.recorded_step}) and call "
                        f"{call.index} (claimed at step {call.claim_step}, {call.lane})"
                    )
                earlier.append(call)
        return problems


class LossyBoundary:
    """The accept's one boundary with Redis (``Messages._accept``), with a fate for its next call: answered;
    the reply lost after Redis ran the script (a cut connection); never sent (a refused connection).
    ``tests/faults/test_lost_accept_replies.py`` adds scripts Redis runs only after the deadline."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.fate = "answered"

    async def __call__(self, keys_: list[Any], args: list[Any]) -> Any:
        if self.fate == "unsent":
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        answer = await self._real(keys_, args)
        if self.fate == "lost":
            raise redis.exceptions.ConnectionError("Connection reset by peer")
        return answer
