"""The state machine of the stateful tests: random interleavings of the store's operations on a real Redis,
with ``invariants.py`` checked after every step.

It drives the store's own Python API: ``Messages.accept`` (Idempotency-Keys, client rates, the facade and
its retries, fixed ids; its reply answered, lost after Redis ran the script or never sent, each answer
checked against the model), ``cancel`` and ``view``; ``Dispatch.take`` for three simulated workers (with and
without a uBill capacity limit), ``settle`` with every outcome, ``beat`` and ``sign_off``;
``Deliveries.apply`` for callbacks (ours, early, duplicated, out of order, foreign, for lost answers);
a settle written again any time later (a lost reply's retry, or one the replicas did not confirm);
reconciliation from uBill's report, dead-letter replay (``Upkeep.dead_letter`` + accept with a fixed id +
``mark_replayed``) and ``Upkeep.sweep``.
The workers follow the dispatcher's policy (``smsgw.worker.dispatch.Dispatcher``) and can pause (alive but
silent: a GC pause, a partition), crash, sign off and be replaced; time moves by ``advance`` (``world.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import inspect
import time
from collections import Counter
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from redis.asyncio import Redis

from smsgw.command import SendCommand
from smsgw.errors import NothingAccepted
from smsgw.store import keys
from smsgw.store.delivery import Deliveries
from smsgw.store.dispatch import (
    Capacity,
    Dispatch,
    Expired,
    Job,
    Mine,
    Orphaned,
    Outcome,
    Reconcile,
    Send,
    Settled,
)
from smsgw.store.messages import Accepted, Exists, Idempotency, Limited, Messages, Mismatch, Replayed
from smsgw.store.records import MessageView, Unit
from smsgw.store.scripts import Scripts
from smsgw.store.upkeep import Upkeep
from smsgw.worker.dispatch import MUST_REPLICATE
from tests.store.invariants import WAITING, Checker, Snapshot, Step, read_snapshot
from tests.store.world import (
    AMBIGUOUS_RETRY_LANES,
    BATCH,
    BEHAVIOURS,
    CAPACITY,
    CLIENTS,
    DEAD_RETENTION_S,
    EVENTS_RETENTION_S,
    LANES,
    LEASE_MS,
    LEASE_S,
    LIMITS,
    LONG_VALIDITY_S,
    MAX_ATTEMPTS,
    MAX_OFFSET_MS,
    MESSAGE_TTL_S,
    NO_CAPACITY,
    NUMBERS,
    ORPHAN_TTL_S,
    RECONCILE_AFTER_S,
    REDIS_CLOCK_LUA,
    SCHEDULE_AHEAD_MS,
    SHORT_VALIDITY_S,
    STORE_TIMEOUT_S,
    WINDOW,
    Call,
    Callback,
    LossyBoundary,
    Ubill,
    VirtualClock,
)

__all__ = ["CLOCK", "REACHED", "Request", "StoreMachine"]

T = TypeVar("T")
CLOCK = VirtualClock()
REACHED: Counter[str] = Counter()  # what the runs reached: the coverage summary of a run
MAX_MESSAGES = 6
RECONCILE_MAX_DELAY_MS = 6 * 3_600_000
ADVANCES_MS = (10_000, 31_000, 61_000, 300_000, 3_600_000, 2 * 86_400_000 + 60_000)
INDEX = st.integers(0, 30)
CLIENT_ACTIONS = ["accept"] * 3 + ["again"] * 2 + ["facade", "cancel", "cancel-other", "replay-dead"]
CODES = st.sampled_from([0, 1, 2, 3, 4])
CALLS = st.sampled_from(["accept"] * 3 + list(BEHAVIOURS))  # mostly the usual answer
# What becomes of an accept's reply: answered; lost after Redis ran the script (a cut connection: the store
# finds out); never sent (a refused connection: "nothing was accepted"). Scripts run after the deadline are
# tests/faults/test_lost_accept_replies.py's (here deadlines are an hour ahead, on Redis's real clock).
FATES = st.sampled_from(["answered"] * 8 + ["lost", "unsent"])


def event(what: str) -> None:
    """Count what a run reached (Hypothesis's statistics, and ``REACHED`` for the run's summary)."""
    REACHED[what] += 1
    with contextlib.suppress(InvalidArgument):  # outside a Hypothesis run (the planted-violation tests)
        hypothesis_event(what)


@dataclass(frozen=True)
class Request:
    """A send as a caller makes it; ``body`` is what an Idempotency-Key's body hash covers."""

    client: str
    lane: str
    numbers: tuple[str, ...]
    scheduled: bool = False
    short: bool = False
    text: str = "hello"
    reference: str | None = None
    facade: bool = False
    key: str | None = None

    @property
    def body(self) -> str:
        """Hex, as the gateway's hash (the key's record is ``|``-separated)."""
        fields = (self.lane, self.numbers, self.scheduled, self.short, self.text, self.reference)
        return hashlib.sha256(repr(fields).encode()).hexdigest()

    @property
    def scope(self) -> str:
        return "facade" if self.facade else "messages"


REQUESTS = st.builds(
    Request,
    client=st.sampled_from(["alpha", "alpha", "alpha", "beta"]),
    lane=st.sampled_from(LANES),
    numbers=st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=5, unique=True).map(tuple),
    scheduled=st.sampled_from([False, False, False, True]),
    short=st.sampled_from([False, False, True]),
    text=st.sampled_from(["code 1234", "hello"]),
    reference=st.sampled_from([None, "ref|7"]),
    facade=st.sampled_from([False, False, True]),
    key=st.sampled_from([None, None, "k1", "k2"]),
)


@dataclass
class Stored:
    id: str
    client: str
    lane: str
    facade_id: int | None
    retry_key: str | None = None  # a facade call's fingerprint mark, while its answer is not definite
    mark_until: int = 0  # (virtual ms) when the mark expires; 0: removed

    @property
    def marked(self) -> bool:
        return CLOCK.ms < self.mark_until


@dataclass
class Held:
    """A job a simulated worker is running, and its uBill call once made."""

    job: Job
    claim_step: int
    call: Call | None = None


@dataclass
class Worker:
    slot: int
    owner: str
    plain: Dispatch
    capped: Dispatch  # the same owner under a uBill capacity limit
    max_attempts: int  # SMSGW_MAX_ATTEMPTS of this process (a rolling deploy may mix them)
    state: str = "alive"  # alive | paused | crashed | stopped
    held: dict[str, Held] = field(default_factory=dict)
    in_doubt: set[str] = field(default_factory=set)  # the dispatcher's: units whose request may have left


@dataclass(frozen=True)
class Rewrite:
    worker: Worker
    job: Job
    outcome: Outcome
    sms_id: str
    reason: str
    next_at: int


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis: Redis = Redis.from_url(url, decode_responses=True)
        self.cmd(self.redis.flushall())
        # Starts at the real time (stream ids, and so XADD's MINID, are Redis's real clock); from here on only
        # the machine moves it, so what a run does depends on its steps, not on how fast they ran.
        CLOCK.ms = time.time_ns() // 1_000_000
        self.scripts = Scripts.load(self.redis)
        self.messages = Messages(self.redis, self.scripts, timeout=STORE_TIMEOUT_S)
        # The same store behind a lossy boundary. Its find-out asks as it would once the deadline (an hour
        # ahead here) had passed: by then the script has run (lost) or never will (unsent).
        real_findout = self.scripts.findout

        async def after_deadline(keys: Any = None, args: Any = None, client: Any = None) -> Any:
            return await real_findout(keys=keys, args=[args[0], 0])

        lossy_scripts = dataclasses.replace(self.scripts, findout=after_deadline)  # type: ignore[arg-type]
        self.lossy = Messages(self.redis, lossy_scripts, timeout=STORE_TIMEOUT_S)
        self.boundary = LossyBoundary(self.lossy._accept)
        self.lossy._accept = self.boundary  # type: ignore[assignment]
        self.deliveries = Deliveries(
            self.redis,
            self.scripts,
            orphan_ttl=ORPHAN_TTL_S,
            reconcile_after=RECONCILE_AFTER_S,
        )
        self.upkeep = Upkeep(self.redis, self.scripts)
        self.ubill = Ubill()
        self.checker = Checker(self.ubill, CLIENTS)
        self.generations = [0, 0, 0]
        self.owners: dict[str, Worker] = {}
        self.workers = [self._worker(slot) for slot in range(3)]
        self.last_beat: dict[str, int] = {}  # owner -> when it last beat (virtual ms)
        self.stored: dict[str, Stored] = {}
        # Settles that wrote what ends an attempt, which the dispatcher may write again later: its reply was
        # lost (a retried settle) or, with SMSGW_REDIS_WAIT_REPLICAS, the replicas did not confirm it.
        self.rewrites: list[Rewrite] = []
        self.requests: list[Request] = []
        # (client, scope, key) -> (body hash, message id, facade smsID, when the record expires)
        self.idempotency: dict[tuple[str, str, str], tuple[str, str, int | None, int]] = {}
        self.tokens = {client: limit.burst for client, limit in LIMITS.items()}
        self.facade_seq = 0
        self.window_second = 0
        self.window: dict[str, int] = {}  # uBill capacity: the counters of the current virtual second
        self.demand: dict[str, int] = {}  # lane -> until when it is flagged as waiting for capacity
        self.counter = 0
        self.offset_ms = 0
        self.step_no = 0
        self.step = Step()
        self.prev: Snapshot | None = None
        self.last_ids: dict[str, str] = {}
        self.redis_clock = self.redis.register_script(REDIS_CLOCK_LUA)
        self.real_mark = 0  # Redis's real clock at the last step (_hold_redis_clock)
        self.run(self._redis_clock_moves(0, set()))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def cmd(self, reply: Awaitable[T] | T) -> T:
        """One raw redis-py command (typed ``Awaitable[T] | T``; always awaitable on the asyncio client)."""
        assert inspect.isawaitable(reply)
        return cast(T, self.loop.run_until_complete(reply))

    def teardown(self) -> None:
        event(f"run: {self.step_no // 10 * 10}+ steps")
        self.run(self.redis.aclose())
        self.loop.close()

    def _worker(self, slot: int) -> Worker:
        owner = f"w{slot}.{self.generations[slot]}"
        self.generations[slot] += 1

        def handle(capacity: Capacity) -> Dispatch:
            return Dispatch(
                self.redis,
                self.redis,
                self.scripts,
                owner=owner,
                lease=LEASE_S,
                capacity=capacity,
            )

        worker = Worker(slot, owner, handle(NO_CAPACITY), handle(CAPACITY), MAX_ATTEMPTS[slot])
        self.owners[owner] = worker
        return worker

    # --- helpers -------------------------------------------------------------------------------------------

    def _begin(self, step: Step) -> None:
        self.step_no += 1
        self.step = step
        self.run(self._hold_redis_clock())

    def _alive(self) -> list[Worker]:
        return [w for w in self.workers if w.state == "alive"]

    def _held(self) -> list[tuple[Worker, Held]]:
        return [(w, h) for w in self._alive() for _, h in sorted(w.held.items())]

    def _uncalled(self) -> list[tuple[Worker, Held]]:
        return [(w, h) for w, h in self._held() if isinstance(h.job, Send) and h.call is None]

    def _prev_unit(self, unit_id: str) -> tuple[MessageView, Unit]:
        assert self.prev is not None
        found = self.prev.unit(unit_id)
        assert found is not None, f"[7] unit {unit_id} handed out, but it does not exist"
        return found

    async def _beat(self, worker: Worker) -> None:
        running: dict[str, list[str]] = {}
        for unit_id, held in sorted(worker.held.items()):
            running.setdefault(held.job.lane, []).append(unit_id)
        await worker.plain.beat(running)
        self.last_beat[worker.owner] = CLOCK.ms

    # --- accept, cancel ------------------------------------------------------------------------------------

    @initialize(requests=st.lists(REQUESTS, min_size=1, max_size=3))
    def some_messages(self, requests: list[Request]) -> None:
        """Every run starts with a few messages (rules add more, up to a handful)."""
        for request in requests:
            self.accept(request)
            self.holds()

    @rule(action=st.sampled_from(CLIENT_ACTIONS), request=REQUESTS, i=INDEX, fate=FATES)
    def client(self, action: str, request: Request, i: int, fate: str) -> None:
        """What callers and admins do: ``accept``; ``again``: a caller's retry of an earlier request (a new
        message id, as the gateway makes one per request); ``facade``: a uBill client repeats a facade
        call (its original while the first answer was not definite, else a new send), or the gateway gives a
        facade call a definite answer; ``cancel``, ``cancel-other`` (another client's id);
        ``replay-dead``: an admin replays a dead letter. An action that cannot apply does nothing.
        ``fate``: what becomes of a send's reply (``FATES``)."""
        full = len(self.stored) >= MAX_MESSAGES
        if action == "accept" and not full:
            self.accept(request, fate)
        elif action == "again" and self.requests and not full:
            self._send(self.requests[i % len(self.requests)], fate=fate)
        elif action == "facade" and self._facade_calls() and not full:
            if i % 3:
                self.facade_retry(i // 3, fate)
            else:
                self.facade_answered(i // 3)
        elif action.startswith("cancel") and self.stored:
            self.cancel(i, wrong_client=action == "cancel-other")
        elif action == "replay-dead" and self._dead_units():
            self.replay_dead(i, mark=i % 3 != 0)
        else:
            self._begin(Step("quiet"))

    def accept(self, request: Request, fate: str = "answered") -> None:
        self.requests.append(request)
        self._send(request, fate=fate)

    def _facade_calls(self) -> list[Stored]:
        return [s for s in self.stored.values() if s.retry_key]

    def facade_retry(self, i: int, fate: str) -> None:
        calls = self._facade_calls()
        first = calls[i % len(calls)]
        holder = next((s for s in calls if s.retry_key == first.retry_key and s.marked), None)
        request = Request(first.client, first.lane, (NUMBERS[0],), facade=True)
        self._send(request, retry_key=first.retry_key, retry_of=holder, fate=fate)

    def facade_answered(self, i: int) -> None:
        """Any facade call's answer, late or not: it removes the mark only while the mark still names it."""
        calls = self._facade_calls()
        answered = calls[i % len(calls)]
        self._begin(Step("quiet"))
        assert answered.retry_key is not None
        holders = [s for s in calls if s.retry_key == answered.retry_key and s.marked]
        assert self.run(self.messages.facade_answered(answered.retry_key, answered.id, answered.facade_id))
        answered.mark_until = 0
        assert all(h.marked for h in holders if h is not answered)
        mark = self.cmd(self.redis.get(answered.retry_key))
        still = [h for h in holders if h is not answered]
        assert (mark is not None) == bool(still), (mark, still)
        event("facade: answered" if answered in holders else "facade: answered late")

    def _send(
        self,
        request: Request,
        *,
        retry_key: str | None = None,
        retry_of: Stored | None = None,
        fate: str = "answered",
    ) -> None:
        self._begin(Step("accept"))
        message_id = f"m{self.counter}"
        self.counter += 1
        now = CLOCK.ms
        command = SendCommand(
            numbers=request.numbers,
            text=request.text,
            brand_id=1,
            lane=request.lane,
            send_at_ms=now + SCHEDULE_AHEAD_MS if request.scheduled else None,
            validity_s=SHORT_VALIDITY_S if request.short else LONG_VALIDITY_S,
            reference=request.reference,
        )
        message = command.message(request.client, now_ms=now, batch_size=BATCH, message_id=message_id)
        idem = None
        if request.key is not None:
            idem = Idempotency(request.client, request.scope, request.key, request.body)
        recorded = self._idempotency_record(idem) if idem is not None else None
        if request.facade and idem is None and retry_key is None:  # the gateway's fingerprint of the call
            retry_key = keys.facade_retry(request.client, f"fp-{message_id}")
        self.boundary.fate = fate
        try:
            outcome = self.run(
                (self.messages if fate == "answered" else self.lossy).accept(
                    message,
                    ttl_s=MESSAGE_TTL_S,
                    limit=LIMITS.get(request.client),
                    idempotency=idem,
                    facade=request.facade,
                    facade_retry=retry_key,
                )
            )
        except NothingAccepted:
            outcome = None
        told = "NothingAccepted" if outcome is None else type(outcome).__name__
        event(f"accept: {told}" + ("" if fate == "answered" else f" (reply {fate})"))
        if fate == "unsent":  # nothing reached Redis: no token spent, nothing written, and the caller is told
            assert outcome is None, outcome
            return
        # What the accept script decides, in its order: the client's rate, the Idempotency-Key, a facade
        # retry, the write.
        if fate == "lost" and self.tokens.get(request.client) == 0:
            # Refused on the rate, reply lost: the find-out sees nothing stored and answers what an earlier
            # request under the same key or fingerprint was answered, else "nothing was accepted" (true).
            if recorded is not None:
                self._check_replay(request, recorded, outcome)
            elif retry_of is not None:
                assert outcome == Replayed(retry_of.id, 200, None, retry_of.facade_id), outcome
            else:
                assert outcome is None, outcome
            return
        assert outcome is not None, f"told nothing was accepted ({fate}), but Redis ran the script"
        if not self._spend_token(request.client, outcome):
            return
        if recorded is not None:
            self._check_replay(request, recorded, outcome)
            return
        if retry_of is not None:
            assert outcome == Replayed(retry_of.id, 200, None, retry_of.facade_id), outcome
            return
        assert isinstance(outcome, Accepted), outcome
        fid = None
        if request.facade:
            self.facade_seq += 1
            fid = self.facade_seq
        assert outcome.facade_id == fid and outcome.view.meta.id == message_id
        stored = self.run(self.messages.view(message_id))
        # The 202 answers from what was written, without reading it back: it must show what a read shows.
        assert stored is not None and outcome.view.resource() == stored.resource()
        if retry_key is not None:  # the mark now names this message (a repeat after a definite answer)
            for other in self.stored.values():
                other.mark_until = 0 if other.retry_key == retry_key else other.mark_until
        until = now + keys.FACADE_RETRY_TTL * 1000 if retry_key is not None else 0
        self.stored[message_id] = Stored(message_id, request.client, request.lane, fid, retry_key, until)
        if idem is not None:
            expires = now + keys.IDEMPOTENCY_TTL * 1000
            self.idempotency[(request.client, request.scope, idem.key_hash)] = (
                request.body,
                message_id,
                fid,
                expires,
            )

    def _check_replay(
        self, request: Request, recorded: tuple[str, str, int | None, int], outcome: object
    ) -> None:
        """A key's repeat: its record answers (422 for another body)."""
        body, first, fid, _ = recorded
        if body != request.body:
            assert isinstance(outcome, Mismatch), outcome
            return
        assert isinstance(outcome, Replayed), outcome
        assert (outcome.message_id, outcome.status_code, outcome.facade_id) == (first, 202, fid)
        assert outcome.view is not None and outcome.view == self.run(self.messages.view(first))

    def _idempotency_record(self, idem: Idempotency) -> tuple[str, str, int | None, int] | None:
        """The key's record while it lives (24 h)."""
        recorded = self.idempotency.get((idem.client, idem.scope, idem.key_hash))
        if recorded is None or CLOCK.ms >= recorded[3]:
            return None
        return recorded

    def _spend_token(self, client: str, outcome: object) -> bool:
        """The client's rate (checked first, and spent by every call that passes it)."""
        if client not in self.tokens:
            return True
        if self.tokens[client] == 0:
            assert isinstance(outcome, Limited) and outcome.retry_after_ms > 0, outcome
            return False
        self.tokens[client] -= 1
        return True

    def cancel(self, i: int, wrong_client: bool) -> None:
        stored = list(self.stored.values())[i % len(self.stored)]
        assert self.prev is not None
        view = self.prev.views[stored.id]
        assert view is not None
        expected = sum(
            1
            for unit in view.units
            if unit.state == "new"
            for n in view.unit_numbers[unit.k]
            if (r := view.recipient(n)) is not None and r.status in WAITING
        )
        if wrong_client:
            self._begin(Step("quiet"))
            assert self.run(self.messages.cancel(stored.id, "gamma")) is None
            return
        self._begin(Step("cancel", message_id=stored.id))
        assert self.run(self.messages.cancel(stored.id, stored.client)) == expected
        event(f"cancel: {'some' if expected else 'none'}")

    # --- workers: take, call, finish -----------------------------------------------------------------------

    @precondition(lambda self: self._alive())
    @rule(
        w=INDEX,
        lane_i=INDEX,
        want=st.integers(1, 3),
        capped=st.sampled_from([False, False, True]),
        lose=st.sampled_from([False] * 9 + [True]),
    )
    def take(self, w: int, lane_i: int, want: int, capped: bool, lose: bool) -> None:
        """``lose``: the answer is lost on its way back (the process knows nothing of what it claimed)."""
        lanes = sorted({s.lane for s in self.stored.values()}) or list(LANES)
        lane = lanes[lane_i % len(lanes)]
        alive = self._alive()
        worker = alive[w % len(alive)]
        self._begin(Step("take", lane=lane))
        if capped:
            jobs, wait = self.run(self._capped_take(worker, lane, want))
        else:
            taken = self.run(worker.plain.take(lane, want, WINDOW))
            jobs, wait = taken.jobs, taken.capacity_wait
        self._check_jobs(worker, lane, want, capped, jobs, wait)
        if lose:
            event("take: answer lost")
            return
        for job in jobs:
            # One run per unit per process, whatever Redis hands out (smsgw.worker.lanes).
            if not isinstance(job, Expired) and job.unit_id not in worker.held:
                worker.held[job.unit_id] = Held(job, self.step_no)

    @precondition(lambda self: self._alive())
    @rule(
        w=INDEX,
        lane_i=INDEX,
        behaviours=st.lists(CALLS, min_size=1, max_size=3),
    )
    def work(self, w: int, lane_i: int, behaviours: list[str]) -> None:
        """One worker's whole turn, as its lane loop runs it: take up to one unit per behaviour, then run each
        job to its end (a Send calls uBill, which answers as the behaviour says)."""
        alive = self._alive()
        worker = alive[w % len(alive)]
        before = set(worker.held)
        self.take(w, lane_i, len(behaviours), capped=False, lose=False)
        self.holds()
        taken = [unit for unit in sorted(worker.held) if unit not in before]
        for unit, behaviour in zip(taken, behaviours, strict=False):
            held = worker.held.pop(unit)
            if isinstance(held.job, Send):
                self._begin(Step("quiet"))
                worker.in_doubt.add(unit)
                held.call = self.ubill.call(unit, held.job.lane, held.job.numbers, behaviour, held.claim_step)
                event(f"call: {behaviour}")
                self.holds()
            self._finish(worker, held, 0)
            self.holds()

    def _check_jobs(
        self, worker: Worker, lane: str, want: int, capped: bool, jobs: list[Job], wait: float
    ) -> None:
        now = CLOCK.ms
        assert self.prev is not None
        if wait > 0:
            event("take: waited for capacity")
            assert capped and wait <= 1.0, wait
        assert sum(1 for j in jobs if not isinstance(j, Expired)) <= want
        for job in jobs:
            event(f"take: {type(job).__name__}")
            view, unit = self._prev_unit(job.unit_id)
            assert view.meta.lane == lane
            score = self.prev.lanes[lane].get(job.unit_id)
            assert score is not None and score <= now, (
                f"[7] {job.unit_id} handed out, timer {score}, now {now}"
            )
            if isinstance(job, Send):
                waiting = tuple(
                    n for n in view.unit_numbers[unit.k] if (r := view.recipient(n)) and r.status in WAITING
                )
                assert unit.state == "new" and job.numbers == waiting and job.tries == unit.tries, (job, unit)
                assert now < view.meta.expires_ms, f"[7] {job.unit_id} handed out past validity"
            elif isinstance(job, Expired):
                assert unit.state == "new" and now >= view.meta.expires_ms, (job, unit)
            elif isinstance(job, Mine):
                assert unit.state == "calling" and unit.owner == worker.owner, (job, unit)
            elif isinstance(job, Orphaned) and unit.owner == worker.owner:
                # This worker's own takeover, handed back after it lost track of it: still the gone owner's
                # attempt (whose liveness was judged at the takeover).
                taken_over = keys.TAKEN_OVER + job.previous_owner
                assert unit.state == "calling" and unit.reason == taken_over, (job, unit)
                event("take: Orphaned again (own takeover)")
            elif isinstance(job, Orphaned):
                assert unit.state == "calling" and unit.owner == job.previous_owner != worker.owner
                # Provably gone: signed off, or silent for longer than the grace.
                previous = self.owners[job.previous_owner]
                silent = now - self.last_beat.get(previous.owner, 0)
                assert previous.state == "stopped" or silent > LEASE_MS, (
                    f"[7] {job.unit_id} taken from {previous.owner} ({previous.state}), heard {silent} ms ago"
                )
            elif isinstance(job, Reconcile):
                assert unit.state == "acked" and unit.open > 0 and unit.sms_id == job.sms_id, (job, unit)
        if capped:
            self._check_capacity()

    async def _capped_take(self, worker: Worker, lane: str, want: int) -> tuple[list[Job], float]:
        """A take under the uBill capacity limit, its one-second window on the virtual clock.

        The script counts in windows of Redis's real second and flags waiting lanes for a real second: what
        it sees would depend on how fast a run goes. So the window of the current virtual second and the
        lanes' demand flags live here, and are written into Redis just before the take, into the real second
        the script reads (and the next one, should it roll over meanwhile), then read back and removed.
        """
        self._window_of_now()
        real = int((await self.redis.time())[0])
        windows = [keys.rate_window(s) for s in (real, real + 1)]
        async with self.redis.pipeline(transaction=True) as pipe:
            for name in windows:
                pipe.delete(name)
                if self.window:
                    pipe.hset(name, mapping=self.window)
                    pipe.pexpire(name, 5_000)
            for other in LANES:
                if self.demand.get(other, 0) > CLOCK.ms:
                    pipe.set(keys.demand(other), "1", px=5_000)
                else:
                    pipe.delete(keys.demand(other))
            await pipe.execute()
        taken = await worker.capped.take(lane, want, WINDOW)
        jobs, wait = taken.jobs, taken.capacity_wait
        seen = [{k: int(v) for k, v in (await self.redis.hgetall(name)).items()} for name in windows]
        self.window = next((used for used in seen if used != self.window), self.window)
        if wait > 0:
            self.demand[lane] = CLOCK.ms + keys.DEMAND_TTL_MS
        await self.redis.delete(*windows, *(keys.demand(other) for other in LANES))
        return jobs, wait

    @rule(lane_i=INDEX, calls=st.integers(1, CAPACITY.calls), numbers=st.integers(1, CAPACITY.numbers))
    def others_call(self, lane_i: int, calls: int, numbers: int) -> None:
        """Other processes' calls take uBill capacity in the current second, as the take script counts them
        (never past the caps). Without it, waiting for capacity needed two capped takes of this run to meet
        in one second: reached or not by chance, so the coverage floor held or failed with the memory
        layout Hypothesis's rule hashes got from whatever was imported before."""
        self._begin(Step("quiet"))
        self._window_of_now()
        lane = LANES[lane_i % len(LANES)]
        calls = min(calls, CAPACITY.calls - self.window.get("calls", 0))
        numbers = min(numbers, CAPACITY.numbers - self.window.get("numbers", 0))
        if calls <= 0 or numbers <= 0:
            return
        for dim, n in (("calls", calls), ("numbers", numbers)):
            for name in (dim, f"{dim}:{lane}"):
                self.window[name] = self.window.get(name, 0) + n
        event("capacity: used by others")

    def _window_of_now(self) -> None:
        """The capacity counters of the current virtual second (a new second starts empty)."""
        second = CLOCK.ms // 1000
        if self.window_second != second:
            self.window_second, self.window = second, {}

    def _check_capacity(self) -> None:
        """No window holds more than the caps (a call bigger than a whole window goes alone)."""
        used = self.window
        assert used.get("calls", 0) <= CAPACITY.calls, used
        assert used.get("numbers", 0) <= CAPACITY.numbers or used.get("calls") == 1, used

    @precondition(lambda self: self._uncalled())
    @rule(i=INDEX, behaviour=CALLS, then=st.sampled_from([True, True, False]))
    def call_ubill(self, i: int, behaviour: str, then: bool) -> None:
        """The worker's request to uBill (a claimed Send only): uBill decides, the worker holds the answer;
        ``then``: it records it at once (else later, with anything in between: callbacks, lease loss...)."""
        self._begin(Step("quiet"))
        uncalled = self._uncalled()
        worker, held = uncalled[i % len(uncalled)]
        job = held.job
        assert isinstance(job, Send)
        worker.in_doubt.add(job.unit_id)
        held.call = self.ubill.call(job.unit_id, job.lane, job.numbers, behaviour, held.claim_step)
        event(f"call: {behaviour}")
        if then:
            self.holds()
            del worker.held[job.unit_id]
            self._finish(worker, held, 0)

    @precondition(lambda self: self._held())
    @rule(i=INDEX, delay_ms=st.sampled_from([0, 20_000]), abandon=st.sampled_from([False] * 5 + [True]))
    def finish(self, i: int, delay_ms: int, abandon: bool) -> None:
        """The rest of a job, as ``smsgw.worker.dispatch.Dispatcher`` runs it. ``abandon``: the job's task
        dies (a bug): the unit stays claimed, and the process remembers what it may have sent."""
        held_jobs = self._held()
        worker, held = held_jobs[i % len(held_jobs)]
        del worker.held[held.job.unit_id]
        if abandon:
            self._begin(Step("quiet"))
            event("finish: abandoned")
            return
        self._finish(worker, held, delay_ms)

    def _finish(self, worker: Worker, held: Held, delay_ms: int) -> None:
        job = held.job
        if isinstance(job, Send):
            if held.call is None:  # the breaker is open: nothing is tried
                self._settle(worker, job, Outcome.DEFER, next_at=CLOCK.ms + delay_ms)
                return
            self._record(worker, job, held.call, delay_ms)
            worker.in_doubt.discard(job.unit_id)
        elif isinstance(job, Mine):
            if job.unit_id in worker.in_doubt:
                self._ambiguous(worker, job, job.tries, job.expires_ms, delay_ms)
            else:
                self._settle(worker, job, Outcome.DEFER, next_at=CLOCK.ms)
        elif isinstance(job, Orphaned):
            self._ambiguous(worker, job, job.tries, job.expires_ms, delay_ms)
        elif isinstance(job, Reconcile):
            self._reconcile(worker, job)

    def _record(self, worker: Worker, job: Send, call: Call, delay_ms: int) -> None:
        if call.answer in ("accepted", "accepted-no-id"):
            sms_id = call.sms_id if call.answer == "accepted" else ""
            self._settle(worker, job, Outcome.ACKED, sms_id=sms_id)
            call.recorded_step = self.step_no
        elif call.answer == "refused":
            self._settle(worker, job, Outcome.REFUSED, reason="bad brand | 10")
        elif call.answer == "unavailable":
            self._retry(worker, job, job.tries, job.expires_ms, delay_ms, "uBill 503 | busy")
        else:
            self._ambiguous(worker, job, job.tries, job.expires_ms, delay_ms)

    def _retry(
        self, worker: Worker, job: Job, tries: int, expires_ms: int, delay_ms: int, reason: str
    ) -> None:
        if tries + 1 >= worker.max_attempts:
            self._settle(worker, job, Outcome.DEAD, reason=f"retries exhausted: {reason}")
            return
        now = CLOCK.ms
        due = min(now + delay_ms, max(now, expires_ms))  # never past validity
        self._settle(worker, job, Outcome.RETRY, reason=reason, next_at=due)

    def _ambiguous(self, worker: Worker, job: Job, tries: int, expires_ms: int, delay_ms: int) -> None:
        if job.lane in AMBIGUOUS_RETRY_LANES and CLOCK.ms < expires_ms:
            self._retry(worker, job, tries, expires_ms, delay_ms, "outcome unknown, retried by policy")
        else:
            self._settle(worker, job, Outcome.UNKNOWN, reason="outcome unknown: timeout")

    def _settle(
        self,
        worker: Worker,
        job: Job,
        outcome: Outcome,
        *,
        sms_id: str = "",
        reason: str = "",
        next_at: int = 0,
    ) -> Settled:
        message_id = keys.split_unit_id(job.unit_id)[0]
        self._begin(Step(f"settle:{outcome.value}", message_id=message_id, unit=job.unit_id, sms_id=sms_id))
        before = self._prev_unit(job.unit_id)[1]
        settled = self.run(
            worker.plain.settle(
                job,
                outcome,
                sms_id=sms_id,
                reason=reason,
                next_at_ms=next_at or CLOCK.ms,
                reconcile_after=RECONCILE_AFTER_S,
            )
        )
        event(f"settle: {outcome.value} {settled.state} ({before.state})")
        wrote = settled.state == "ok" or (settled.state == "stale" and outcome is Outcome.ACKED)
        if wrote and outcome in MUST_REPLICATE:
            self.rewrites.append(Rewrite(worker, job, outcome, sms_id, reason, next_at or CLOCK.ms))
        mine = before.state == "calling" and before.owner == worker.owner
        if settled.state == "ok":
            assert mine, (
                f"[7] {outcome} of {job.unit_id} ({before.state} by {before.owner}) ok for {worker.owner}"
            )
        if settled.state == "ok" and outcome is Outcome.DEFER:
            assert settled.tries == before.tries, "[7] a defer spent an attempt"
        if settled.state == "ok" and outcome in (Outcome.RETRY, Outcome.DEAD):
            assert settled.tries == before.tries + 1, "[7] a retry did not spend exactly one attempt"
        return settled

    @precondition(lambda self: self.rewrites)
    @rule(i=INDEX)
    def rewrite(self, i: int) -> None:
        """One of those settles written again, any time later (``Dispatcher._settle``), by its worker while it
        lives: with the write in place (no failover here) it must change nothing, whatever came since."""
        again = self.rewrites.pop(i % len(self.rewrites))
        if again.worker.state != "alive":
            return
        message_id = keys.split_unit_id(again.job.unit_id)[0]
        self._begin(Step(f"settle:{again.outcome.value}", message_id=message_id, unit=again.job.unit_id))
        before = self._prev_unit(again.job.unit_id)[1]
        settled = self.run(
            again.worker.plain.settle(
                again.job,
                again.outcome,
                sms_id=again.sms_id,
                reason=again.reason,
                next_at_ms=again.next_at,
                reconcile_after=RECONCILE_AFTER_S,
            )
        )
        event(f"rewrite: {again.outcome.value} {settled.state} ({before.state})")
        assert settled.state != "ok", f"[7] a rewritten {again.outcome} of {again.job.unit_id} wrote again"

    def _reconcile(self, worker: Worker, job: Reconcile) -> None:
        """The worker reads uBill's report, applies each line, and looks again later if needed."""
        self._begin(Step("reconcile", message_id=keys.split_unit_id(job.unit_id)[0]))
        for number, code in self.ubill.report(job.sms_id):
            if number in job.numbers:
                self.run(self.deliveries.apply(job.sms_id, number, code, CLOCK.ms))
        age = CLOCK.ms - job.acked_ms
        delay = min(RECONCILE_MAX_DELAY_MS, max(int(RECONCILE_AFTER_S * 1000), age // 2))
        settled = self.run(worker.plain.settle(job, Outcome.RECONCILED, next_at_ms=CLOCK.ms + delay))
        event(f"settle: reconciled {settled.state}")

    # --- liveness and time ---------------------------------------------------------------------------------

    @rule(
        w=st.integers(0, 2),
        how=st.sampled_from(["beat"] * 4 + ["pause", "crash", "stop", "resume"] + ["revive"] * 2),
    )
    def liveness(self, w: int, how: str) -> None:
        """beat: a heartbeat now; pause: alive but silent (a GC pause, a partition); crash: gone; stop: a
        clean stop (sign off); revive: a paused worker resumes where it was, a crashed or stopped one is
        replaced by a new process (a new owner); resume: a paused worker resumes and its jobs in flight run
        to their end at once (late answers, for units others may have taken over meanwhile)."""
        self._begin(Step("quiet"))
        worker = self.workers[w]
        event(f"liveness: {how} ({worker.state})")
        if how == "resume" and worker.state == "paused":
            worker.state = "alive"
            for unit in sorted(worker.held):
                held = worker.held.pop(unit)
                if isinstance(held.job, Send) and held.call is None:
                    self._begin(Step("quiet"))
                    worker.in_doubt.add(unit)
                    held.call = self.ubill.call(
                        unit, held.job.lane, held.job.numbers, "accept", held.claim_step
                    )
                    self.holds()
                self._finish(worker, held, 0)
                self.holds()
            return
        if how in ("revive", "resume"):
            if worker.state == "paused":
                worker.state = "alive"
            elif worker.state != "alive":
                self.workers[w] = self._worker(w)
            return
        if worker.state != "alive":
            return
        if how == "beat":
            self.run(self._beat(worker))
        elif how == "pause":
            worker.state = "paused"
        else:
            worker.state = "crashed" if how == "crash" else "stopped"
            worker.held.clear()
            if how == "stop":
                self.run(worker.plain.sign_off())

    @precondition(lambda self: self.offset_ms < MAX_OFFSET_MS)
    @rule(
        delta=st.sampled_from(ADVANCES_MS), stall=st.sampled_from([False, False, True]), sweep=st.booleans()
    )
    def advance(self, delta: int, stall: bool, sweep: bool) -> None:
        """Time passes; live workers beat throughout, unless Redis stalls (nobody is heard for ``delta``);
        ``sweep``: housekeeping runs then."""
        self._begin(Step("quiet"))
        self.run(self._advance(delta, stall))
        if sweep:
            self.sweep()

    async def _advance(self, delta: int, stall: bool) -> None:
        beating = [] if stall else self._alive()
        for worker in beating:  # a worker beating throughout beats at the start too (ends any earlier gap)
            await self._beat(worker)
        await self._redis_clock_moves(delta, {w.owner for w in beating})
        CLOCK.ms += delta
        self.offset_ms += delta
        for worker in beating:
            await self._beat(worker)

    async def _hold_redis_clock(self) -> None:
        """Give back the real time that passed since the last step: between steps Redis's clock stands still
        (only ``advance`` moves it), so no comparison with it depends on how fast a run goes."""
        await self._redis_clock_moves(None, set())

    async def _redis_clock_moves(self, delta: int | None, continuous: set[str]) -> None:
        """What ``delta`` ms on Redis's clock does to what Redis keeps (``REDIS_CLOCK_LUA``); None: minus the
        real time since the last call."""
        live = [keys.worker(owner) for owner in sorted(continuous)]
        raw = await self.redis_clock(
            keys=[keys.worker("")], args=["" if delta is None else delta, self.real_mark, *live]
        )
        self.real_mark = int(raw[0])
        for name in raw[1:]:
            event(f"advance: {str(name).split(':')[1]} key expired")

    # --- uBill's callbacks ---------------------------------------------------------------------------------

    @rule(i=INDEX, code=CODES, foreign=st.sampled_from([False, False, False, True]))
    def ubill_status(self, i: int, code: int, foreign: bool) -> None:
        """uBill learns a status of a number it accepted from us and owes us its callback. ``foreign``:
        another integration on the same uBill account sent to one of our numbers; its callback comes to us
        too (one callback URL per account)."""
        self._begin(Step("quiet"))
        if foreign:
            number = NUMBERS[i % len(NUMBERS)]
            fresh = not self.ubill.foreign or i % 2 == 0
            sms_id = self.ubill.new_foreign() if fresh else max(self.ubill.foreign)
            self.ubill.foreign.setdefault(sms_id, set()).add(number)
            self.ubill.callbacks.append(Callback(sms_id, number, code, CLOCK.ms, foreign=True))
            return
        if not self.ubill.ours:
            return
        pairs = sorted((sms, n) for sms, numbers in self.ubill.ours.items() for n in numbers)
        sms_id, number = pairs[i % len(pairs)]
        self.ubill.status[(sms_id, number)] = code
        self.ubill.callbacks.append(Callback(sms_id, number, code, CLOCK.ms, foreign=False))

    @precondition(lambda self: self.ubill.callbacks)
    @rule(i=INDEX, keep=st.sampled_from([False, False, True]))
    def deliver(self, i: int, keep: bool) -> None:
        """uBill calls back, in any order; ``keep``: it will call back with the same status again."""
        callback = self.ubill.callbacks[i % len(self.ubill.callbacks)]
        if not keep:
            self.ubill.callbacks.remove(callback)
        self._begin(Step("callback", number=callback.number, sms_id=callback.sms_id))
        applied = self.run(
            self.deliveries.apply(callback.sms_id, callback.number, callback.code, callback.occurred_ms)
        )
        self.step.outcome = applied.outcome
        event(f"callback: {applied.outcome}{' (foreign)' if callback.foreign else ''}")
        assert self.prev is not None
        indexed = self.prev.sms_index.get(callback.sms_id)
        if applied.outcome in ("orphaned", "adopted"):  # "kept": only callbacks wait for it, not recorded
            recorded = indexed not in (None, keys.SMS_KEPT)
            assert not recorded, f"[7] callback for recorded smsID {callback.sms_id} {applied.outcome}"

    # --- dead letters, housekeeping ------------------------------------------------------------------------

    def _dead_units(self) -> list[str]:
        if self.prev is None:
            return []
        views = [view for view in self.prev.views.values() if view is not None]
        return sorted(keys.unit_id(v.meta.id, u.k) for v in views for u in v.units if u.state == "dead")

    def replay_dead(self, i: int, mark: bool) -> None:
        """What the admin endpoint does; ``mark`` False: the gateway died between the accept and the mark."""
        self._begin(Step("accept"))
        dead = self._dead_units()
        letter = self.run(self.upkeep.dead_letter(dead[i % len(dead)]))
        assert letter is not None and letter.unit.state == "dead"
        view, replay_id = letter.view, letter.replay_id
        failed = letter.failed_numbers()
        if not failed:
            return
        command = SendCommand.again(view, failed)
        client = view.meta.client
        message = command.message(client, now_ms=CLOCK.ms, batch_size=BATCH, message_id=replay_id)
        outcome = self.run(
            self.messages.accept(message, ttl_s=MESSAGE_TTL_S, limit=LIMITS.get(client), check_exists=True)
        )
        event(f"replay: {type(outcome).__name__}")
        if not self._spend_token(client, outcome):
            return
        if replay_id in self.stored:
            assert isinstance(outcome, Exists), outcome
        else:
            assert isinstance(outcome, Accepted), outcome
            self.stored[replay_id] = Stored(replay_id, client, view.meta.lane, None)
        if mark:
            self.run(self.upkeep.mark_replayed(letter, replay_id))

    def sweep(self) -> None:
        """Housekeeping (a worker runs it on a timer)."""
        assert self.prev is not None
        now = CLOCK.ms
        prev = self.prev
        old = {d for d, score in prev.dead.items() if score < now - DEAD_RETENTION_S * 1000}
        # A dead letter also goes with its message (its hash expired); the sweep looks at the oldest 100.
        oldest = sorted(prev.dead, key=lambda d: (prev.dead[d], d))[:100]
        gone = {d for d in oldest if prev.views.get(keys.split_unit_id(d)[0]) is None} - old
        swept = self.run(
            self.upkeep.sweep(dead_retention_s=DEAD_RETENTION_S, events_retention_s=EVENTS_RETENTION_S)
        )
        assert swept.orphans_expired == sum(1 for score in prev.orphans.values() if score <= now)
        assert swept.dead_letters_dropped == len(old) + len(gone)
        if swept.orphans_expired or swept.dead_letters_dropped:
            event("sweep: dropped something")

    # --- the invariants ------------------------------------------------------------------------------------

    @invariant()
    def holds(self) -> None:
        current = self.run(
            read_snapshot(self.redis, self.messages, list(self.stored), CLIENTS, self.last_ids, CLOCK.ms)
        )
        problems = self.checker.check(self.prev, current, self.step)
        self.prev, self.last_ids, self.step = current, current.last_ids, Step()
        for what, count in self.checker.adoptions.items():
            REACHED[f"adoption (matching rule): {what}"] += count
        self.checker.adoptions.clear()
        assert not problems, "\n".join(str(p) for p in problems)
