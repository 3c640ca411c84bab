"""The soak's checker on hand-made evidence: each rule that decides a figure, without processes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ops.soak.checker import check
from ops.soak.collect import Collected
from ops.soak.config import FOREIGN_MARK
from ops.soak.records import Answer, Attempt, FaultWindow, Journal, SendRecord
from ops.soak.sequences import forward
from ops.soak.verdict import COLUMNS, MUST_BE_ZERO

pytestmark = pytest.mark.soak
T0 = 1_800_000_000.0
PROBLEMS = "https://sms-gateway.internal/problems/"


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class World:
    """A journal and what a collection would have found, built up one fact at a time."""

    def __init__(self) -> None:
        self.journal = Journal(seed=1, workload_started=T0)
        self.collected = Collected()
        self._sms_id = 100_000

    def send(
        self, *attempts: Attempt, numbers: tuple[str, ...] = ("995599000001",), retry: str = "keyed"
    ) -> SendRecord:
        record = SendRecord(len(self.journal.sends) + 1, "transactional", "soak-a", list(numbers), retry)
        record.attempts = list(attempts)
        self.journal.sends.append(record)
        return record

    def message(self, message_id: str, created: float, **statuses: str) -> None:
        recipients = [{"number": n, "status": s} for n, s in statuses.items()]
        self.collected.messages[message_id] = {
            "id": message_id,
            "created_at": iso(created),
            "send_at": None,
            "recipients": recipients,
        }

    def ubill(self, number: str, at: float, outcome: str = "ok", text: str = "hi") -> None:
        self._sms_id += 1
        self.collected.ubill_sends.append(
            {"sms_id": self._sms_id, "numbers": [number], "outcome": outcome, "received": at, "text": text}
        )

    def events(self, message_id: str, number: str, *statuses: str) -> None:
        for i, status in enumerate(statuses):
            self.collected.events.append(
                {
                    "_id": f"{int(T0 * 1000) + len(self.collected.events)}-{i}",
                    "message_id": message_id,
                    "client": "soak-a",
                    "reference": None,
                    "number": number,
                    "status": status,
                    "provider_sms_id": None,
                    "provider_status_id": None,
                    "occurred_at": iso(T0),
                }
            )

    def verdict(self) -> Any:
        return check(self.journal, self.collected)


N = "995599000001"
ok202 = Attempt(T0 + 1, T0 + 1.1, 202, message_id="m1")


def delivered(world: World, message_id: str = "m1", created: float = T0 + 1.05) -> None:
    world.message(message_id, created, **{N: "delivered"})
    world.events(message_id, N, "dispatching", "submitted", "sent", "delivered")


def test_a_clean_send_counts_once_and_fails_nothing() -> None:
    world = World()
    world.send(ok202)
    delivered(world)
    world.ubill(N, T0 + 1.2)
    verdict = world.verdict()
    assert verdict.rows["all"]["accepted"] == 1
    assert verdict.rows["all"]["sent_once"] == 1
    assert verdict.failures == {}
    assert verdict.rows["none"]["sends"] == 1


def test_one_message_at_ubill_twice_is_a_duplicate() -> None:
    world = World()
    world.send(ok202)
    delivered(world)
    world.ubill(N, T0 + 1.2)
    world.ubill(N, T0 + 3.0)
    verdict = world.verdict()
    assert verdict.failures == {"duplicated": 1}
    assert "sent twice" in next(iter(verdict.reasons["duplicated"]))


def test_accept_then_5xx_is_counted_apart() -> None:
    world = World()
    world.send(ok202)
    delivered(world)
    world.ubill(N, T0 + 1.2, outcome="accept_error")
    world.ubill(N, T0 + 2.0)
    verdict = world.verdict()
    assert verdict.rows["all"]["dup_accept_5xx"] == 1
    assert verdict.failures == {}


def test_accept_then_5xx_does_not_excuse_a_third_copy() -> None:
    world = World()
    world.send(ok202)
    delivered(world)
    world.ubill(N, T0 + 1.2, outcome="accept_error")
    world.ubill(N, T0 + 2.0)
    world.ubill(N, T0 + 3.0)
    assert world.verdict().failures == {"duplicated": 1}


def test_an_unkeyed_retry_after_a_timeout_is_the_callers_choice() -> None:
    world = World()
    timed_out = Attempt(T0 + 1, T0 + 1.5, None, error="timeout")
    retried = Attempt(T0 + 2, T0 + 2.1, 202, message_id="m2")
    world.send(timed_out, retried, retry="unkeyed")
    world.message("m1", T0 + 1.2, **{N: "delivered"})
    world.events("m1", N, "dispatching", "submitted", "sent", "delivered")
    delivered(world, "m2", T0 + 2.05)
    world.ubill(N, T0 + 1.6)
    world.ubill(N, T0 + 2.2)
    verdict = world.verdict()
    assert verdict.rows["all"]["dup_caller_retry"] == 1
    assert verdict.rows["all"]["duplicated"] == 0
    assert verdict.failures == {}


def _facade_repeat(first: Attempt) -> Any:
    """A facade call whose first attempt got ``first``, repeated and answered an smsID: two messages."""
    world = World()
    record = world.send(first, Attempt(T0 + 2, T0 + 2.1, 200, status_id=0, facade_id="7"), retry="unkeyed")
    record.kind = "facade-get"
    world.message("m1", T0 + 1.2, **{N: "delivered"})
    world.events("m1", N, "dispatching", "submitted", "sent", "delivered")
    delivered(world, "m2", T0 + 2.05)
    world.ubill(N, T0 + 1.6)
    world.ubill(N, T0 + 2.2)
    return world.verdict()


def test_a_facade_repeat_after_outcome_unknown_stored_twice_is_the_products_duplicate() -> None:
    unknown = Attempt(T0 + 1, T0 + 1.5, 503, problem="outcome unknown: repeating this exact call is safe")
    unknown.retry_after = "2"
    verdict = _facade_repeat(unknown)
    assert verdict.failures == {"duplicated": 1}
    assert any("facade call repeated" in r for r in verdict.reasons["duplicated"])


def test_a_facade_repeat_after_no_answer_stored_twice_is_the_callers_choice() -> None:
    verdict = _facade_repeat(Attempt(T0 + 1, T0 + 1.5, None, error="timeout"))
    assert verdict.rows["all"]["dup_caller_retry"] == 1
    assert verdict.failures == {}


def test_a_plain_503_for_a_stored_message_breaks_the_contract_and_its_retry_duplicates() -> None:
    world = World()
    refused = Attempt(T0 + 1, T0 + 1.5, 503, problem=PROBLEMS + "unavailable", retry_after="1")
    retried = Attempt(T0 + 2, T0 + 2.1, 202, message_id="m2")
    world.send(refused, retried, retry="unkeyed")
    world.message("m1", T0 + 1.2, **{N: "delivered"})
    world.events("m1", N, "dispatching", "submitted", "sent", "delivered")
    delivered(world, "m2", T0 + 2.05)
    world.ubill(N, T0 + 1.6)
    world.ubill(N, T0 + 2.2)
    verdict = world.verdict()
    assert verdict.failures == {"duplicated": 1, "contract": 1}
    assert any("for a message that was stored" in r for r in verdict.reasons["contract"])


def test_a_keyed_replay_reveals_a_503_that_stored() -> None:
    world = World()
    refused = Attempt(T0 + 1, T0 + 1.5, 503, problem=PROBLEMS + "unavailable", retry_after="1")
    replayed = Attempt(T0 + 2, T0 + 2.1, 202, message_id="m1")
    world.send(refused, replayed)
    delivered(world, "m1", T0 + 1.2)
    world.ubill(N, T0 + 1.6)
    assert world.verdict().failures == {"contract": 1}


def test_outcome_unknown_then_replay_is_within_the_contract() -> None:
    world = World()
    unknown = Attempt(T0 + 1, T0 + 1.5, 503, problem=PROBLEMS + "outcome-unknown", retry_after="1")
    world.send(unknown, Attempt(T0 + 2, T0 + 2.1, 202, message_id="m1"))
    delivered(world, "m1", T0 + 1.2)
    world.ubill(N, T0 + 1.6)
    assert world.verdict().failures == {}


def test_500s_and_503_without_retry_after_break_the_contract() -> None:
    world = World()
    world.send(
        Attempt(T0 + 1, T0 + 1.1, 500, problem=PROBLEMS + "internal"),
        Attempt(T0 + 2, T0 + 2.1, 503, problem=PROBLEMS + "unavailable"),
        numbers=("995599000002",),
    )
    world.journal.answers.append(Answer("DELETE /v1/messages/{id}", T0 + 3, 500))
    world.collected.callbacks.append(
        {"sms_id": 1, "number": N, "status_id": 1, "time": iso(T0 + 4), "http_status": 500}
    )
    verdict = world.verdict()
    assert verdict.failures == {"contract": 4}


def test_delivered_without_ubill_is_false() -> None:
    world = World()
    world.send(ok202)
    delivered(world)
    assert world.verdict().failures == {"false_delivered": 1}


def _sms_id_of(message_id: str, world: World, sms_id: str) -> None:
    message = world.collected.messages[message_id]
    assert message is not None
    message["recipients"][0]["provider_sms_id"] = sms_id


@pytest.mark.parametrize("sms_id", ["150000123", "100500"])
def test_a_lost_answer_matched_to_another_integrations_callback_is_counted_apart(sms_id: str) -> None:
    """The contract's matching rule may adopt a foreign callback for an `unknown` unit: apart, not false."""
    world = World()
    world.journal.foreign_sms_ids.add(100500)
    world.send(ok202)
    world.message("m1", T0 + 1.05, **{N: "delivered"})
    _sms_id_of("m1", world, sms_id)
    world.events("m1", N, "dispatching", "unknown", "submitted", "delivered")
    verdict = world.verdict()
    assert verdict.failures == {}
    assert verdict.rows["all"]["matched_foreign"] == 1


def test_a_false_delivered_with_one_of_our_sms_ids_still_fails() -> None:
    world = World()
    world.send(ok202)
    world.message("m1", T0 + 1.05, **{N: "delivered"})
    _sms_id_of("m1", world, "100001")
    world.events("m1", N, "dispatching", "submitted", "delivered")
    assert world.verdict().failures == {"false_delivered": 1}


@pytest.mark.parametrize("status", ["submitted", "sent", "pending", "error"])
def test_a_status_claiming_a_send_uBill_never_got_is_false(status: str) -> None:
    world = World()
    world.send(ok202)
    world.message("m1", T0 + 1.05, **{N: status})
    world.events("m1", N, "dispatching", "submitted", *(["sent"] if status in ("sent", "pending") else []))
    if status in ("pending", "error"):
        world.events("m1", N, status)
    assert world.verdict().failures == {"false_status": 1}


def test_cancelled_but_at_ubill_is_false() -> None:
    world = World()
    world.send(ok202)
    world.message("m1", T0 + 1.05, **{N: "cancelled"})
    world.events("m1", N, "cancelled")
    world.ubill(N, T0 + 1.2)
    assert world.verdict().failures == {"false_status": 1}


@pytest.mark.parametrize("status", [None, "queued", "dispatching"])
def test_acknowledged_but_gone_or_stuck_is_lost(status: str | None) -> None:
    world = World()
    world.send(ok202)
    if status is None:
        world.collected.messages["m1"] = None  # 404
    else:
        world.message("m1", T0 + 1.05, **{N: status})
        if status == "dispatching":
            world.events("m1", N, "dispatching")
    verdict = world.verdict()
    assert verdict.failures == {"lost": 1}


@pytest.mark.parametrize("status", ["cancelled", "expired", "rejected", "failed"])
def test_a_final_status_explains_a_number_ubill_never_got(status: str) -> None:
    world = World()
    world.send(ok202)
    world.message("m1", T0 + 1.05, **{N: status})
    if status in ("rejected", "failed"):
        world.events("m1", N, "dispatching", status)
    else:
        world.events("m1", N, status)
    assert world.verdict().failures == {}


def test_unknown_is_reported_by_whether_ubill_got_it() -> None:
    world = World()
    world.send(ok202, numbers=(N, "995599000002"))
    world.message("m1", T0 + 1.05, **{N: "unknown", "995599000002": "unknown"})
    world.events("m1", N, "dispatching", "unknown")
    world.events("m1", "995599000002", "dispatching", "unknown")
    world.ubill(N, T0 + 1.2)
    verdict = world.verdict()
    assert (verdict.rows["all"]["unknown_at_ubill"], verdict.rows["all"]["unknown_not_at_ubill"]) == (1, 1)
    assert verdict.failures == {}


def test_other_integrations_sends_are_not_ours_to_count() -> None:
    world = World()
    world.send(ok202)
    delivered(world)
    world.ubill(N, T0 + 1.2)
    world.ubill(N, T0 + 1.3, text=f"{FOREIGN_MARK} hello")
    world.ubill(N, T0 + 1.4)
    world.journal.foreign_sms_ids.add(world._sms_id)
    assert world.verdict().failures == {}


@pytest.mark.parametrize(
    ("statuses", "figure"),
    [
        (("dispatching", "submitted", "sent", "sent", "delivered"), "events_extra"),
        (("dispatching", "submitted", "delivered", "sent"), "events_extra"),
        (("dispatching", "sent", "submitted", "delivered"), "events_extra"),
        (("dispatching", "submitted", "sent"), "events_missing"),
        (("queued", "dispatching", "submitted", "sent", "delivered"), "events_extra"),
    ],
)
def test_event_sequences_must_go_forward_once_and_end_at_the_status(
    statuses: tuple[str, ...], figure: str
) -> None:
    world = World()
    world.send(ok202)
    world.message("m1", T0 + 1.05, **{N: "delivered"})
    world.events("m1", N, *statuses)
    world.ubill(N, T0 + 1.2)
    assert world.verdict().failures == {figure: 1}


def test_events_for_a_recipient_nobody_has_are_extra() -> None:
    world = World()
    world.send(ok202)
    delivered(world)
    world.ubill(N, T0 + 1.2)
    world.events("m1", "995599000009", "delivered")
    assert world.verdict().failures == {"events_extra": 1}


def test_the_retry_path_and_a_settled_unknown_are_forward() -> None:
    assert forward("dispatching", "queued")
    assert forward("unknown", "delivered")
    assert forward("scheduled", "queued")
    assert not forward("delivered", "failed")
    assert not forward("sent", "sent")
    assert not forward("submitted", "dispatching")


def test_a_send_counts_in_the_row_of_every_fault_active_during_its_life() -> None:
    world = World()
    world.send(ok202)
    delivered(world)
    world.ubill(N, T0 + 4.0)  # its life: first request (T0+1) until uBill got it (T0+4)
    world.journal.faults += [
        FaultWindow("redis-kill", T0 + 3.0, T0 + 3.5),
        FaultWindow("worker-kill", T0 + 5.0, T0 + 6.0),
    ]
    verdict = world.verdict()
    assert verdict.rows["redis-kill"]["sends"] == 1
    assert "worker-kill" not in verdict.rows
    assert "none" not in verdict.rows


def test_every_must_be_zero_figure_is_a_column() -> None:
    assert set(MUST_BE_ZERO) <= {name for name, _ in COLUMNS}
