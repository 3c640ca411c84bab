"""What must hold in Redis after every step of the stateful tests, read from Redis and checked against the
previous step and the fake uBill.

A ``Snapshot`` is everything the checks read: each known message through ``Messages.view``, the events
appended to the clients' streams since the last snapshot, every key with its TTL, the lanes, dead letters,
orphans and indexes. ``Checker.check(prev, cur, step)`` returns the violations, each tagged with its
invariant:

    [1] a terminal recipient status never changes
    [2] no number of a message is sent twice (except what a policy excuses: ``Ubill.duplicate_sends``)
    [3] every status change has exactly one event, with the recipient's fields, and no event comes without one
    [4] counts agree with the recipients, and status is the common status or "mixed"
    [5] every key has a TTL or is a bounded structure; every timer, index and list entry has an owner; each
        unfinished unit has exactly one timer, in its lane, and a finished one none
    [6] a recipient carries an smsID only if uBill accepted that number under it from this unit's call, or the
        unit adopted it by the matching rule for lost answers, on the evidence of a callback of that smsID
    [7] the rest: statuses only move forward (but dispatching → queued), each kind of step changes only what
        it may, unit states agree with their recipients, open counts, attempts, adoption only of lost answers
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from smsgw.clock import iso
from smsgw.store import keys, statuses
from smsgw.store.messages import Messages
from smsgw.store.records import MessageView, Unit
from tests.store.world import LANES, MAX_ATTEMPTS, ORPHAN_TTL_S, Ubill

TERMINAL = statuses.TERMINAL
RANK = statuses.RANK
WAITING = frozenset({"queued", "scheduled"})
DELIVERY = frozenset({"sent", "pending", "delivered", "failed", "error"})
MARGIN_MS = 60_000  # TTL checks stay clear of a TTL's last minute (a step's own milliseconds run on it)

# Statuses an event may carry in each kind of step (a step is one rule of the machine).
ALLOWED_EVENTS: dict[str, frozenset[str]] = {
    "take": frozenset({"dispatching", "expired"}),
    "settle:acked": frozenset({"submitted"}) | DELIVERY,  # kept early callbacks are applied with the ack
    "settle:retry": frozenset({"queued"}),
    "settle:defer": frozenset({"queued"}),
    "settle:unknown": frozenset({"unknown", "submitted"}) | DELIVERY,  # or adopted by a kept callback
    "settle:refused": frozenset({"rejected"}),
    "settle:dead": frozenset({"failed"}),
    "settle:reconciled": frozenset(),
    "callback": frozenset({"submitted"}) | DELIVERY,
    "reconcile": DELIVERY,
    "cancel": frozenset({"cancelled"}),
}

# Recipient statuses each unit state allows (the unit record and its recipients are written together).
UNIT_RECIPIENTS: dict[str, frozenset[str]] = {
    "new": WAITING,
    "calling": frozenset({"dispatching"}),
    "unknown": frozenset({"unknown"}),
    "refused": frozenset({"rejected"}),
    "dead": frozenset({"failed"}),
    "done": TERMINAL,
    "acked": frozenset({"submitted", "sent", "pending"}) | TERMINAL,
    "replayed": frozenset({"failed"}),
}

# Keys that may live without a TTL: bounded by construction (and checked below).
_BOUNDED = [
    (re.compile(r"^smsgw:lane:(otp|transactional|bulk)$"), "zset"),
    (re.compile(r"^smsgw:wake:(otp|transactional|bulk)$"), "list"),
    (re.compile(r"^smsgw:dead$"), "zset"),
    (re.compile(r"^smsgw:orphans$"), "zset"),
    (re.compile(r"^smsgw:facade:seq$"), "string"),
    (re.compile(r"^smsgw:balance$"), "string"),
    (re.compile(r"^smsgw:stream:[^:]+$"), "stream"),
]


@dataclass(frozen=True)
class Violation:
    invariant: int
    text: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.text}"


@dataclass
class Step:
    """What the last rule did, as far as the checks need to know."""

    kind: str = "quiet"  # quiet: no recipient may change
    lane: str | None = None
    message_id: str | None = None  # settle, cancel, reconcile: the only message that may change
    unit: str | None = None  # settle: the only unit that may change
    number: str | None = None  # callback: the only number a delivery status may reach
    sms_id: str | None = None  # settle acked / callback: its smsID
    outcome: str | None = None  # callback: what Deliveries.apply answered


@dataclass
class Snapshot:
    now_ms: int
    views: dict[str, MessageView | None]
    events: list[tuple[str, dict[str, Any]]]
    last_ids: dict[str, str]
    ttls: dict[str, int]
    types: dict[str, str]
    lanes: dict[str, dict[str, float]]
    dead: dict[str, float]
    orphans: dict[str, float]
    sms_index: dict[str, str]
    unsettled: dict[str, set[str]]
    orphan_numbers: dict[str, set[str]]
    lengths: dict[str, int] = field(default_factory=dict)  # lists: wake nudges, kept orphan callbacks

    def unit(self, unit_id: str) -> tuple[MessageView, Unit] | None:
        message_id, k = keys.split_unit_id(unit_id)
        view = self.views.get(message_id)
        if view is None:
            return None
        found = next((u for u in view.units if u.k == k), None)
        return (view, found) if found is not None else None


async def read_snapshot(
    redis: Redis,
    messages: Messages,
    message_ids: list[str],
    clients: tuple[str, ...],
    last_ids: dict[str, str],
    now_ms: int,
) -> Snapshot:
    views = {mid: await messages.view(mid) for mid in message_ids}
    events: list[tuple[str, dict[str, Any]]] = []
    new_last = dict(last_ids)
    for client in clients:
        start = f"({last_ids[client]}" if client in last_ids else "-"
        for entry_id, fields in await redis.xrange(keys.client_stream(client), min=start, max="+"):
            events.append((client, json.loads(fields["event"])))
            new_last[client] = entry_id
    names = sorted([k async for k in redis.scan_iter(match="*", count=1000)])
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.pttl(name)
            pipe.type(name)
        raw = await pipe.execute()
    ttls = {name: int(raw[2 * i]) for i, name in enumerate(names)}
    types = {name: str(raw[2 * i + 1]) for i, name in enumerate(names)}
    lanes = {lane: dict(await redis.zrange(keys.lane_queue(lane), 0, -1, withscores=True)) for lane in LANES}
    dead = dict(await redis.zrange(keys.DEAD, 0, -1, withscores=True))
    orphans = dict(await redis.zrange(keys.ORPHANS, 0, -1, withscores=True))
    sms_index, unsettled, orphan_numbers, lengths = {}, {}, {}, {}
    for name in names:
        if name.startswith(keys.sms("")):
            indexed = await redis.get(name)
            if indexed is not None:  # not gone since the scan ("kept" entries expire with their callbacks)
                sms_index[name.removeprefix(keys.sms(""))] = str(indexed)
        elif name.startswith(keys.unsettled("")):
            unsettled[name.removeprefix(keys.unsettled(""))] = set(await redis.smembers(name))
        elif name.startswith(keys.orphan_number("")):
            orphan_numbers[name.removeprefix(keys.orphan_number(""))] = set(await redis.smembers(name))
        elif types[name] == "list":
            lengths[name] = int(await redis.llen(name))
    return Snapshot(
        now_ms,
        views,
        events,
        new_last,
        ttls,
        types,
        lanes,
        dead,
        orphans,
        sms_index,
        unsettled,
        orphan_numbers,
        lengths,
    )


def unit_state(unit: Unit) -> str:
    return "replayed" if unit.state.startswith("replayed:") else unit.state


def unfinished(unit: Unit, now_ms: int) -> bool | None:
    """Whether the unit must have a timer (None: either, an acked unit past reconciliation's give-up)."""
    if unit.state in ("new", "calling"):
        return True
    if unit.state == "acked" and unit.open > 0 and unit.sms_id:
        return True if now_ms - unit.at_ms < keys.RECONCILE_GIVE_UP_MS else None
    return False


@dataclass
class Checker:
    ubill: Ubill
    clients: tuple[str, ...]
    adopted: dict[str, set[str]] = field(default_factory=dict)  # unit -> smsIDs it took by the matching rule
    orphaned_at: dict[str, int] = field(default_factory=dict)  # smsID -> when a callback of it was last kept
    adoptions: Counter[str] = field(default_factory=Counter)  # how each adoption turned out, for the summary

    def check(self, prev: Snapshot | None, cur: Snapshot, step: Step) -> list[Violation]:
        if step.kind == "callback" and step.outcome == "orphaned" and step.sms_id:
            self.orphaned_at[step.sms_id] = cur.now_ms
        out: list[Violation] = []
        out += self._recipients(prev, cur, step)
        out += [Violation(2, text) for text in self.ubill.duplicate_sends()]
        for view in cur.views.values():
            if view is not None:
                out += self._counts(view)
                out += self._units(view)
        out += self._keys(cur)
        out += self._adoptions(prev, cur, step)
        out += self._provenance(cur)
        return out

    # [1] [3] [7]: each recipient against the previous step and the events written since.
    def _recipients(self, prev: Snapshot | None, cur: Snapshot, step: Step) -> list[Violation]:
        out = []
        events: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for client, event in cur.events:
            if event.get("client") != client:
                out.append(Violation(3, f"event in {client}'s stream for client {event.get('client')}"))
            events[(str(event.get("message_id")), str(event.get("number")))].append(event)
        for mid, view in cur.views.items():
            before = prev.views.get(mid) if prev is not None else None
            if view is None:
                if before is not None:
                    out.append(Violation(7, f"message {mid} is gone"))
                continue
            for r in view.recipients():
                evs = events.pop((mid, r.number), [])
                where = f"{r.number} of {mid}"
                old = before.recipient(r.number) if before is not None else None
                if old is None:
                    if evs:
                        out.append(Violation(3, f"{where}: events at acceptance: {_statuses(evs)}"))
                    if r.status not in WAITING:
                        out.append(Violation(7, f"{where}: accepted as {r.status}"))
                    continue
                if old.status in TERMINAL and (r != old or evs):
                    out.append(
                        Violation(1, f"{where}: terminal {old.status} became {r.status} {_statuses(evs)}")
                    )
                if not evs:
                    if r != old:
                        out.append(Violation(3, f"{where}: {_rec(old)} became {_rec(r)} without an event"))
                    continue
                chain = [old.status] + [str(e.get("status")) for e in evs]
                for a, b in itertools.pairwise(chain):
                    if a == b:
                        out.append(Violation(3, f"{where}: event {b} without a change"))
                    elif a in TERMINAL:
                        out.append(Violation(1, f"{where}: terminal {a} moved to {b}"))
                    elif RANK[b] < RANK[a] and (a, b) != ("dispatching", "queued"):
                        out.append(Violation(7, f"{where}: moved backwards {a} -> {b}"))
                last = evs[-1]
                expected = {
                    "message_id": mid,
                    "client": view.meta.client,
                    "reference": view.meta.reference,
                    "number": r.number,
                    "status": r.status,
                    "provider_sms_id": r.sms_id or None,
                    "provider_status_id": int(r.status_id) if r.status_id else None,
                }
                wrong = {k: (last.get(k), v) for k, v in expected.items() if last.get(k) != v}
                if wrong:
                    out.append(Violation(3, f"{where}: last event does not match the recipient: {wrong}"))
                if r.updated_ms != cur.now_ms:
                    out.append(
                        Violation(3, f"{where}: changed at {iso(r.updated_ms)}, not at the step's time")
                    )
                out += self._step_may(step, mid, view, r.number, [str(e.get("status")) for e in evs])
        for (mid, number), evs in events.items():
            out.append(Violation(3, f"events for {number} of {mid}, no such recipient: {_statuses(evs)}"))
        return out

    def _step_may(
        self, step: Step, mid: str, view: MessageView, number: str, changes: list[str]
    ) -> list[Violation]:
        allowed = ALLOWED_EVENTS.get(step.kind, frozenset())
        out = [
            Violation(7, f"{number} of {mid}: {s} in a {step.kind} step") for s in changes if s not in allowed
        ]
        if step.message_id is not None and mid != step.message_id:
            out.append(Violation(7, f"{number} of {mid} changed in a {step.kind} step of {step.message_id}"))
        if step.lane is not None and view.meta.lane != step.lane:
            out.append(Violation(7, f"{number} of {mid} changed in a take of lane {step.lane}"))
        if step.unit is not None:
            _, k = keys.split_unit_id(step.unit)
            if number not in view.unit_numbers[k]:
                out.append(Violation(7, f"{number} of {mid} changed in a settle of unit {step.unit}"))
        if step.kind == "callback":
            if step.outcome in ("duplicate", "ignored", "orphaned"):
                out.append(Violation(7, f"{number} of {mid} changed by a callback answered {step.outcome}"))
            # Adoption also applies the callbacks kept for the same smsID (the unit's other numbers).
            delivery = [s for s in changes if s in DELIVERY]
            if delivery and number != step.number and step.outcome != "adopted":
                out.append(Violation(7, f"callback for {step.number} moved {number} of {mid} to {delivery}"))
        return out

    # [4]
    def _counts(self, view: MessageView) -> list[Violation]:
        out = []
        recipients = view.recipients()
        by_status = Counter(r.status for r in recipients)
        counts = view.counts()
        resource = view.resource(minimal=True)
        mid = view.meta.id
        if counts != dict(by_status) or resource["counts"] != dict(by_status):
            out.append(Violation(4, f"{mid}: counts {counts} but recipients {dict(by_status)}"))
        if len(recipients) != view.recipient_count or sum(counts.values()) != view.recipient_count:
            out.append(
                Violation(4, f"{mid}: {len(recipients)} recipients, the message says {view.recipient_count}")
            )
        common = recipients[0].status if len(by_status) == 1 else "mixed"
        if resource["status"] != common:
            out.append(Violation(4, f"{mid}: status {resource['status']}, recipients say {common}"))
        if len(view.units) != view.meta.unit_count:
            out.append(
                Violation(
                    4, f"{mid}: {len(view.units)} unit records, the message says {view.meta.unit_count}"
                )
            )
        return out

    # [7] unit records against their recipients
    def _units(self, view: MessageView) -> list[Violation]:
        out = []
        for unit in view.units:
            where = f"unit {view.meta.id}:{unit.k} ({unit.state})"
            numbers = view.unit_numbers[unit.k]
            found = [view.recipient(n) for n in numbers]
            recs = [r for r in found if r is not None]
            state = unit_state(unit)
            allowed = UNIT_RECIPIENTS.get(state)
            if allowed is None:
                out.append(Violation(7, f"{where}: unknown unit state"))
                continue
            bad = sorted({r.status for r in recs} - allowed)
            if bad:
                out.append(Violation(7, f"{where}: recipients {bad}"))
            if state == "acked":
                open_ = sum(1 for r in recs if r.status not in TERMINAL)
                if unit.open != open_:
                    out.append(Violation(7, f"{where}: open {unit.open}, {open_} recipients not final"))
            if state == "calling" and not unit.owner:
                out.append(Violation(7, f"{where}: calling without an owner"))
            if unit.tries > max(MAX_ATTEMPTS):
                out.append(Violation(7, f"{where}: {unit.tries} attempts spent, at most {max(MAX_ATTEMPTS)}"))
        return out

    # [5]
    def _keys(self, cur: Snapshot) -> list[Violation]:
        out = []
        for name, ttl in cur.ttls.items():
            if ttl >= 0 or ttl == -2:  # -2: gone since the scan
                continue
            kind = next((t for pattern, t in _BOUNDED if pattern.match(name)), None)
            if kind is None:
                out.append(Violation(5, f"{name} ({cur.types[name]}) has no TTL and is no bounded structure"))
            elif cur.types[name] != kind:
                out.append(Violation(5, f"{name} is a {cur.types[name]}, expected a {kind}"))
        for name, types in cur.types.items():
            if (
                name.startswith(keys.client_stream(""))
                and name.removeprefix(keys.client_stream("")) not in self.clients
            ):
                out.append(Violation(5, f"{name}: a stream of no client ({types})"))
            if name.startswith(keys.wake("")) and cur.lengths.get(name, 0) > keys.WAKE_CAP:
                out.append(Violation(5, f"{name}: {cur.lengths[name]} nudges, capped at {keys.WAKE_CAP}"))
        # Timers: one per unfinished unit, in its lane; none for a finished one; none without an owner.
        timers: dict[str, list[str]] = defaultdict(list)
        for lane, members in cur.lanes.items():
            for member in members:
                timers[member].append(lane)
                found = cur.unit(member)
                if found is None:
                    out.append(Violation(5, f"timer {member} in {lane}: no such unit"))
        for mid, view in cur.views.items():
            if view is None:
                continue
            for unit in view.units:
                unit_id = keys.unit_id(mid, unit.k)
                lanes = timers.get(unit_id, [])
                need = unfinished(unit, cur.now_ms)
                where = f"unit {unit_id} ({unit.state}, open {unit.open}, smsID {unit.sms_id!r})"
                if need and lanes != [view.meta.lane]:
                    out.append(Violation(5, f"{where}: unfinished, timers in {lanes or 'no lane'}"))
                if need is None and lanes not in ([], [view.meta.lane]):
                    out.append(Violation(5, f"{where}: timers in {lanes}"))
                if need is False and lanes:
                    out.append(Violation(5, f"{where}: finished, yet timers in {lanes}"))
        for member in cur.dead:
            found = cur.unit(member)
            if found is None or found[1].state != "dead":
                out.append(
                    Violation(5, f"dead letter {member}: unit is {found[1].state if found else 'missing'}")
                )
        # Kept callbacks: the list and its smsgw:orphans entry are written together with the same TTL (the
        # entry then waits for the sweep).
        for sms, score in cur.orphans.items():
            if score > cur.now_ms + MARGIN_MS and keys.orphan(sms) not in cur.ttls:
                out.append(
                    Violation(5, f"orphans lists {sms} until {iso(int(score))}, its callbacks are gone")
                )
        # A number's set of smsIDs with kept callbacks is renewed by each new one; one whose callbacks expired
        # must go at the number's next orphan or with the set: within two orphan TTLs of its last kept
        # callback (before the fix in callback.lua it stayed as long as callbacks kept coming).
        for number, kept in cur.orphan_numbers.items():
            for sms in sorted(kept):
                age = cur.now_ms - self.orphaned_at.get(sms, 0)
                if keys.orphan(sms) not in cur.ttls and age >= 2 * ORPHAN_TTL_S * 1000:
                    out.append(
                        Violation(5, f"orphan-number {number} lists {sms}, kept {age} ms ago, long gone")
                    )
        for sms, unit_id in cur.sms_index.items():
            if unit_id == keys.SMS_KEPT:  # callbacks wait for it: its kept list is checked above
                continue
            found = cur.unit(unit_id)
            if found is None or found[1].state != "acked":
                state = found[1].state if found else "missing"
                out.append(Violation(5, f"smsID {sms} indexes {unit_id}, which is {state}"))
        # The smsID index lives SMS_ID_TTL from the ack, an unknown unit's place in unsettled at least
        # UNSETTLED_TTL from its call (both: unit.at).
        unknown_units: dict[str, set[str]] = defaultdict(set)
        recent_unknown: dict[str, set[str]] = defaultdict(set)
        for mid, view in cur.views.items():
            if view is None:
                continue
            for unit in view.units:
                unit_id = keys.unit_id(mid, unit.k)
                age = cur.now_ms - unit.at_ms
                if unit.state == "unknown":
                    for number in view.unit_numbers[unit.k]:
                        unknown_units[number].add(unit_id)
                        if age < keys.UNSETTLED_TTL * 1000 - MARGIN_MS:
                            recent_unknown[number].add(unit_id)
                fresh = age < keys.SMS_ID_TTL * 1000 - MARGIN_MS
                if (
                    unit.state == "acked"
                    and unit.sms_id
                    and fresh
                    and cur.sms_index.get(unit.sms_id) != unit_id
                ):
                    out.append(Violation(5, f"unit {unit_id} acked as {unit.sms_id}, which is not indexed"))
        for number in sorted(set(cur.unsettled) | set(recent_unknown)):
            listed = cur.unsettled.get(number, set())
            if not listed <= unknown_units[number] or not recent_unknown[number] <= listed:
                expected = sorted(unknown_units[number])
                out.append(
                    Violation(5, f"unsettled {number} lists {sorted(listed)}, unknown units {expected}")
                )
        return out

    # [6] [7]: a unit that became acked under an smsID it did not get from its own call adopted it.
    def _adoptions(self, prev: Snapshot | None, cur: Snapshot, step: Step) -> list[Violation]:
        out = []
        for mid, view in cur.views.items():
            if view is None:
                continue
            for unit in view.units:
                if unit.state != "acked" or not unit.sms_id:
                    continue
                unit_id = keys.unit_id(mid, unit.k)
                before = prev.unit(unit_id) if prev is not None else None
                if before is not None and before[1].state == "acked":
                    continue
                own_ack = step.kind == "settle:acked" and step.unit == unit_id and step.sms_id == unit.sms_id
                if own_ack:
                    continue
                was = before[1].state if before is not None else "absent"
                lost = was == "unknown" or (step.kind == "settle:unknown" and step.unit == unit_id)
                if not lost:
                    out.append(
                        Violation(
                            6, f"unit {unit_id} ({was}) adopted smsID {unit.sms_id} in a {step.kind} step"
                        )
                    )
                    continue
                # Evidence: the callback being applied, or a callback of that smsID kept before this step.
                arriving = step.kind == "callback" and step.sms_id == unit.sms_id
                kept = prev is not None and keys.orphan(unit.sms_id) in prev.ttls
                if not (arriving or kept):
                    out.append(
                        Violation(6, f"unit {unit_id} adopted smsID {unit.sms_id} without any callback of it")
                    )
                    continue
                self.adopted.setdefault(unit_id, set()).add(unit.sms_id)
                reached = any(c.reached for c in self.ubill.calls if c.unit == unit_id)
                if self.ubill.unit_of.get(unit.sms_id) == unit_id:
                    self.adoptions["its own call's smsID"] += 1
                elif reached:
                    self.adoptions["another smsID, though uBill got its call"] += 1
                else:
                    self.adoptions["another smsID, and uBill never got its call (a false status)"] += 1
        return out

    def _provenance(self, cur: Snapshot) -> list[Violation]:
        out = []
        for mid, view in cur.views.items():
            if view is None:
                continue
            for unit in view.units:
                unit_id = keys.unit_id(mid, unit.k)
                for number in view.unit_numbers[unit.k]:
                    r = view.recipient(number)
                    if r is None:
                        continue
                    where = f"{number} of {mid} ({r.status})"
                    if r.sms_id:
                        ours = (
                            self.ubill.unit_of.get(r.sms_id) == unit_id
                            and number in self.ubill.ours[r.sms_id]
                        )
                        if not ours and r.sms_id not in self.adopted.get(unit_id, set()):
                            out.append(
                                Violation(6, f"{where} carries smsID {r.sms_id}, not accepted for its unit")
                            )
                    elif r.status in DELIVERY - {"failed"}:
                        out.append(Violation(6, f"{where} without an smsID"))
                    elif r.status == "submitted" and not (unit.state == "acked" and unit.sms_id == ""):
                        out.append(
                            Violation(
                                6, f"{where} without an smsID in a unit {unit.state} as {unit.sms_id!r}"
                            )
                        )
                    elif r.status == "failed" and not r.error:
                        out.append(Violation(6, f"{where} without an smsID or a reason"))
        return out


def _statuses(events: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("status")) for e in events]


def _rec(r: Any) -> str:
    return f"{r.status}|{r.updated_ms}|{r.sms_id}|{r.status_id}|{r.error}"
