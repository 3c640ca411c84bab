"""The verdict: one row of figures per fault kind, from the journal and what was collected afterwards.

Recipients are the unit (every number belongs to exactly one logical send). A send counts in the row of every
fault that was active during its life (first request until its numbers reached uBill, or five seconds after
its last answer when they never did) and in ``all``; answers count in the rows of the faults active when they
came. The figures that must be 0 are listed in ``MUST_BE_ZERO``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ops.soak.config import FOREIGN_MARK
from ops.soak.records import Attempt, FaultWindow, Journal, SendRecord
from ops.soak.sequences import check_events
from ops.soak.verdict import Verdict, active_faults

__all__ = ["check", "parse_time"]

NOT_SENT_YET: Final = frozenset({"queued", "scheduled", "dispatching"})
CLAIM_SENT: Final = frozenset({"submitted", "sent", "pending", "error"})
CLAIM_NOT_SENT: Final = frozenset({"cancelled", "expired", "rejected", "queued", "scheduled", "dispatching"})
# The facade report's uBill codes, as the statuses they stand for when no event named the message.
_REPORT_CODES: Final = {0: "sent", 1: "delivered", 2: "failed", 3: "queued", 4: "error"}
AFTER_LAST_ANSWER: Final = 5.0
CREATED_SLACK: Final = 0.05
HAND_MADE_SMS_IDS: Final = 100_000_000  # the injector's hand-made foreign callbacks use smsIDs from here up


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _stream_order(event: dict[str, Any]) -> tuple[int, int]:
    ms, _, seq = str(event.get("_id", "0-0")).partition("-")
    return int(ms), int(seq or 0)


class _Facts:
    """Indexes over what was collected: uBill's records per number, statuses and events per recipient."""

    def __init__(self, journal: Journal, collected: Any) -> None:
        self.ubill: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in collected.ubill_sends:
            if (
                str(record.get("text", "")).startswith(FOREIGN_MARK)
                or record["sms_id"] in journal.foreign_sms_ids
            ):
                continue
            for number in record["numbers"]:
                if number not in collected.hidden_numbers:
                    self.ubill[number].append(record)
        self.foreign_sms_ids = set(journal.foreign_sms_ids)
        self.messages: dict[str, dict[str, Any] | None] = collected.messages
        self.unreadable: dict[str, str] = collected.unreadable
        self.events: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.event_messages: dict[str, set[str]] = defaultdict(set)
        for event in sorted(collected.events, key=_stream_order):
            key = (str(event.get("message_id")), str(event.get("number")))
            self.events[key].append(event)
            self.event_messages[key[1]].add(key[0])
        self.reports: dict[str, dict[str, int]] = collected.reports
        self.origin = journal.workload_started

    def at(self, moment: float) -> str:
        """A moment as the schedule prints it (seconds after the workload started)."""
        return f"t+{moment - self.origin:.2f}s"

    def carries_foreign_sms(self, ids: Sequence[str], number: str) -> bool:
        """A recipient whose smsID is another integration's: adopted by the contract's matching rule (a lost
        answer matched to a callback for the same number while our call was out)."""
        for message_id in ids:
            recipient = self.recipient(message_id, number)
            sms = str((recipient or {}).get("provider_sms_id") or "")
            if sms.isdigit() and (int(sms) in self.foreign_sms_ids or int(sms) >= HAND_MADE_SMS_IDS):
                return True
        return False

    def recipient(self, message_id: str, number: str) -> dict[str, Any] | None:
        message = self.messages.get(message_id)
        if not message:
            return None
        return next((r for r in message.get("recipients", []) if r.get("number") == number), None)


def _life_end(send: SendRecord, facts: _Facts) -> float:
    received = [min(r["received"] for r in facts.ubill[n]) for n in send.numbers if facts.ubill.get(n)]
    end = max(received) if received else send.last_ended + AFTER_LAST_ANSWER
    return max(end, send.last_ended, send.send_at or 0.0)


def _creator(attempts: Sequence[Attempt], created: float) -> Attempt | None:
    """The attempt during which a message was created (by the gateway's ``created_at``).

    A request the caller gave up on (timeout, cut connection) may still reach the gateway later, inside a
    later attempt's window: an ambiguous attempt before the window's one is then named instead, so an answer
    is only blamed for a stored message when nothing else could have stored it."""
    for index, attempt in enumerate(attempts):
        if attempt.started - CREATED_SLACK <= created <= attempt.ended + CREATED_SLACK:
            earlier = [a for a in attempts[:index] if a.ambiguous]
            return earlier[-1] if earlier and attempt.denies_storing else attempt
    earlier = [a for a in attempts if a.started <= created]
    return earlier[-1] if earlier else None


def _message_ids(send: SendRecord, facts: _Facts) -> list[str]:
    ids = {a.message_id for a in send.attempts if a.message_id}
    for number in send.numbers:
        ids |= facts.event_messages.get(number, set())
    return sorted(ids)


def _statuses(send: SendRecord, number: str, ids: Sequence[str], facts: _Facts) -> list[str]:
    statuses: list[str] = []
    for message_id in ids:
        if message_id in facts.unreadable:
            continue
        if facts.messages.get(message_id) is None:
            statuses.append("gone")
            continue
        recipient = facts.recipient(message_id, number)
        if recipient is not None:
            statuses.append(str(recipient["status"]))
    if not statuses and send.facade:
        for attempt in send.attempts:
            code = facts.reports.get(attempt.facade_id or "", {}).get(number)
            if code is not None:
                statuses.append(_REPORT_CODES.get(code, "queued"))
    return statuses


def _check_answers(
    send: SendRecord, ids: Sequence[str], facts: _Facts, verdict: Verdict, faults: Sequence[FaultWindow]
) -> None:
    """Each attempt's answer against the contract, counted when it came."""
    for attempt in send.attempts:
        kinds = active_faults(faults, attempt.started, attempt.ended)
        if attempt.status is not None and attempt.status >= 500 and attempt.status != 503:
            verdict.add(
                kinds,
                "contract",
                f"{_route(send)} HTTP {attempt.status} {_short(attempt.problem)}",
                f"send #{send.seq} ({send.kind}) at {facts.at(attempt.ended)}",
            )
        if attempt.status == 503 and not attempt.retry_after:
            verdict.add(kinds, "contract", f"{_route(send)} 503 without Retry-After", f"send #{send.seq}")
    creators: list[tuple[str, Attempt | None]] = []
    for message_id in ids:
        message = facts.messages.get(message_id)
        if message and message.get("created_at"):
            creators.append((message_id, _creator(send.attempts, parse_time(str(message["created_at"])))))
    stored_anyhow = bool(creators) or any(facts.ubill.get(n) for n in send.numbers)
    if not creators and stored_anyhow and send.attempts and all(a.denies_storing for a in send.attempts):
        last = send.attempts[-1]
        verdict.add(
            active_faults(faults, last.started, last.ended),
            "contract",
            "every answer denied storing, yet uBill got the numbers",
            f"send #{send.seq} ({send.kind}) answers {[a.status for a in send.attempts]}",
        )
    for message_id, creator in creators:
        if creator is not None and creator.denies_storing:
            verdict.add(
                active_faults(faults, creator.started, creator.ended),
                "contract",
                f"{_route(send)} {creator.status} {_short(creator.problem)} for a message that was stored",
                f"send #{send.seq} ({send.kind}): {message_id} created at "
                f"{facts.at(parse_time(str((facts.messages.get(message_id) or {})['created_at'])))}, "
                f"answer {facts.at(creator.started)}..{facts.at(creator.ended)}",
            )


def _route(send: SendRecord) -> str:
    return {"facade-get": "GET /v1/sms/send", "facade-post": "POST /v1/sms/send"}.get(
        send.kind, "POST /v1/messages"
    )


def _short(problem: str | None) -> str:
    """A problem type's last segment (``.../problems/internal`` -> ``internal``), or the facade's message."""
    return (problem or "").rstrip("/").rsplit("/", 1)[-1][:60]


def _caller_choice(send: SendRecord, number: str, ids: Sequence[str], facts: _Facts) -> bool:
    """A second message made by an unkeyed retry after an answer that did not say whether it was stored."""
    if send.retry != "unkeyed":
        return False
    holding = [m for m in ids if facts.recipient(m, number) is not None]
    if len(holding) < 2:
        return False
    answered = {a.message_id for a in send.attempts if a.message_id}
    for message_id in holding:
        if message_id in answered:
            continue
        message = facts.messages.get(message_id) or {}
        creator = _creator(send.attempts, parse_time(str(message.get("created_at", "1970-01-01T00:00:00Z"))))
        if creator is not None and send.facade and creator.accepted:
            continue  # the facade answers an smsID, not the message id: this call was told what it made
        if creator is None or not creator.ambiguous:
            return False
        if send.facade and creator.status is not None:
            return False  # the facade's "outcome unknown" promised that repeating the call is safe
    return True


@dataclass(frozen=True)
class _Recipient:
    """One number of one send, with what uBill got and what the API says."""

    send: SendRecord
    number: str
    ids: Sequence[str]
    records: list[dict[str, Any]]
    statuses: list[str]
    foreign_sms: bool = False  # carries an smsID of another integration (the contract's matching rule)

    @property
    def where(self) -> str:
        send = self.send
        return (
            f"send #{send.seq} ({send.kind}, {send.retry}) {self.number} messages={','.join(self.ids) or '-'}"
        )

    @property
    def accept_5xx(self) -> bool:
        return any(r.get("outcome") == "accept_error" for r in self.records)


def _check_recipient(
    send: SendRecord, number: str, ids: Sequence[str], facts: _Facts, verdict: Verdict, kinds: set[str]
) -> None:
    statuses = _statuses(send, number, ids, facts)
    foreign = facts.carries_foreign_sms(ids, number)
    one = _Recipient(send, number, ids, facts.ubill.get(number, []), statuses, foreign)
    stored = send.accepted or bool(one.statuses) or bool(one.records)
    if send.accepted:
        verdict.add(kinds, "accepted")
    elif stored:
        verdict.add(kinds, "stored_unacked", send.retry)
    if not stored:
        return
    count = len(one.records)
    if count == 1:
        verdict.add(kinds, "sent_once")
    elif count > 1:
        _check_duplicate(one, facts, verdict, kinds)
    if "unknown" in one.statuses:
        verdict.add(kinds, "unknown_at_ubill" if count else "unknown_not_at_ubill")
    if count == 0:
        _check_never_sent(one, verdict, kinds)
    elif set(one.statuses) <= CLAIM_NOT_SENT and one.statuses and not one.accept_5xx:
        verdict.add(
            kinds,
            "false_status",
            f"{'/'.join(sorted(set(one.statuses)))} although uBill got it",
            f"{one.where} ({count}x)",
        )


def _check_duplicate(one: _Recipient, facts: _Facts, verdict: Verdict, kinds: set[str]) -> None:
    detail = (
        f"{one.where}: uBill got it {len(one.records)}x (smsIDs {[r['sms_id'] for r in one.records]}, "
        f"outcomes {[r['outcome'] for r in one.records]}), statuses {one.statuses}"
    )
    holding = [m for m in one.ids if facts.recipient(m, one.number) is not None]
    accepted_5xx = sum(1 for r in one.records if r.get("outcome") == "accept_error")
    if accepted_5xx and len(one.records) - accepted_5xx <= 1:
        verdict.add(kinds, "dup_accept_5xx", "uBill accepted and answered 500", detail)
    elif _caller_choice(one.send, one.number, one.ids, facts):
        verdict.add(kinds, "dup_caller_retry", "unkeyed retry after an ambiguous answer", detail)
    elif len(holding) <= 1:
        verdict.add(kinds, "duplicated", f"one {one.send.kind} message sent twice", detail)
    elif one.send.retry == "keyed":
        verdict.add(kinds, "duplicated", "one Idempotency-Key, several messages", detail)
    elif one.send.facade:
        verdict.add(kinds, "duplicated", "a facade call repeated after an uncertain answer", detail)
    else:
        verdict.add(kinds, "duplicated", "a retry after an answer that denied storing", detail)


def _check_never_sent(one: _Recipient, verdict: Verdict, kinds: set[str]) -> None:
    statuses = one.statuses
    if one.foreign_sms and "unknown" not in statuses:
        verdict.add(
            kinds, "matched_foreign", "lost answer matched to another integration's callback", one.where
        )
    elif "delivered" in statuses:
        verdict.add(kinds, "false_delivered", "delivered, uBill never got it", one.where)
    elif CLAIM_SENT & set(statuses):
        claimed = "/".join(sorted(CLAIM_SENT & set(statuses)))
        verdict.add(kinds, "false_status", f"{claimed}, uBill never got it", one.where)
    elif one.send.accepted and all(s in NOT_SENT_YET or s == "gone" for s in statuses):
        found = statuses or ["none found"]
        verdict.add(kinds, "lost", f"{'/'.join(sorted(set(found)))}, never at uBill", one.where)


def check(journal: Journal, collected: Any) -> Verdict:
    facts = _Facts(journal, collected)
    verdict = Verdict()
    faults = journal.faults
    seen_events: set[tuple[str, str]] = set()
    owned: dict[str, set[str]] = {}
    for send in journal.sends:
        kinds = active_faults(faults, send.first_started, _life_end(send, facts))
        verdict.add(kinds, "sends")
        ids = _message_ids(send, facts)
        _check_answers(send, ids, facts, verdict, faults)
        for number in send.numbers:
            _check_recipient(send, number, ids, facts, verdict, kinds)
        for message_id in ids:
            owned.setdefault(message_id, kinds)
    for message_id, message in facts.messages.items():
        if message is not None:
            check_events(
                message_id,
                message,
                facts.events,
                verdict,
                owned.get(message_id, {"unattributed"}),
                seen_events,
            )
    for key, events in facts.events.items():
        if key not in seen_events and key[0] not in facts.unreadable:
            verdict.add(
                {"unattributed"},
                "events_extra",
                "events for no recipient of a readable message",
                f"{key[0]} {key[1]}: {[e.get('status') for e in events]}",
            )
    for answer in journal.answers:
        if answer.status is not None and answer.status >= 500 and answer.status != 503:
            verdict.add(
                active_faults(faults, answer.at, answer.at),
                "contract",
                f"{answer.route} HTTP {answer.status} {_short(answer.problem)}",
                f"{answer.note} at {facts.at(answer.at)}",
            )
    for callback in collected.callbacks:
        status = callback.get("http_status")
        if isinstance(status, int) and status >= 500 and status != 503:
            at = parse_time(str(callback["time"]))
            verdict.add(
                active_faults(faults, at, at),
                "contract",
                f"GET /callbacks/ubill (from uBill) HTTP {status}",
                f"smsID {callback['sms_id']} {callback['number']} at {facts.at(at)}",
            )
    return verdict
