"""How a message lives in its Redis hash, and the one typed view of it that the rest of the code reads.

Records are compact ``|``-separated strings so a 10,000-recipient message stays one hash of a few hundred
kilobytes; the Lua scripts read and write the same formats (``lua/_lib.lua``: ``rec_*`` and ``unit_*``).
Nothing outside ``smsgw.store`` reads a raw field: handlers, the worker and upkeep get a ``MessageView``.
"""

from __future__ import annotations

import itertools
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

from smsgw.clock import iso, now_ms
from smsgw.store import keys
from smsgw.store.statuses import UNIT_NEW

__all__ = ["MessageMeta", "MessageView", "NewMessage", "Recipient", "Unit", "new_message_id"]


class Recipient(NamedTuple):
    """``r:{number}`` = ``status|updated_ms|sms_id|status_id|error``."""

    number: str
    status: str
    updated_ms: int
    sms_id: str
    status_id: str
    error: str

    @classmethod
    def parse(cls, number: str, raw: str) -> Recipient:
        status, updated, sms_id, status_id, error = raw.split("|", 4)
        return cls(number, status, int(updated or 0), sms_id, status_id, error)


class Unit(NamedTuple):
    """``u:{k}`` = ``state|owner|sms_id|tries|open|at_ms|reason``: one uBill call of up to a batch of numbers.

    ``owner`` is the worker that started the call (``calling``); ``open`` counts the unit's recipients not yet
    final once uBill accepted it (the unit's lane timer goes when it reaches 0); ``at_ms`` is when the call
    started (``calling``, ``unknown``) or was accepted (``acked``).
    """

    k: int
    state: str
    owner: str
    sms_id: str
    tries: int
    open: int
    at_ms: int
    reason: str

    @classmethod
    def parse(cls, k: int, raw: str) -> Unit:
        state, owner, sms_id, tries, open_, at, reason = raw.split("|", 6)
        return cls(k, state, owner, sms_id, int(tries or 0), int(open_ or 0), int(at or 0), reason)

    @classmethod
    def fresh(cls, k: int, numbers: int) -> Unit:
        """A unit nothing has happened to yet: accepted without a record (one field less per unit)."""
        return cls(k, UNIT_NEW, "", "", 0, numbers, 0, "")


_PROCESS_TAG = "".join(
    secrets.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(6)
)  # per process
_SEQUENCE = itertools.count(secrets.randbelow(1 << 20))


def _base36(value: int, width: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(width):
        value, rest = divmod(value, 36)
        out = digits[rest] + out
    return out


def new_message_id() -> str:
    """Sortable by creation time (milliseconds first, fixed width until 2059), unique (process tag +
    counter), short (an id is written a dozen times per message: keys, timers, events) and cheap: no system
    call per id. Ids are not secrets: every read checks the owning client."""
    return f"msg_{_base36(now_ms(), 8)}{_PROCESS_TAG}{_base36(next(_SEQUENCE), 4)}"


@dataclass(frozen=True)
class MessageMeta:
    """What a message is, independent of its recipients' progress."""

    id: str
    client: str
    lane: str
    brand_id: int
    reference: str | None
    segments: int
    encoding: str
    created_ms: int
    send_at_ms: int | None
    expires_ms: int
    stop_list: bool
    unit_count: int
    facade_id: int | None

    @classmethod
    def parse(cls, message_id: str, fields: dict[str, str]) -> MessageMeta:
        send_at = fields.get("sa") or ""
        fid = fields.get("fid") or ""
        return cls(
            id=message_id,
            client=fields["c"],
            lane=fields["p"],
            brand_id=int(fields["b"]),
            reference=fields.get("ref") or None,
            segments=int(fields["seg"]),
            encoding=fields["enc"],
            created_ms=int(fields["ca"]),
            send_at_ms=int(send_at) if send_at else None,
            expires_ms=int(fields["ea"]),
            stop_list=fields.get("sl") != "0",
            unit_count=int(fields.get("u", "0")),
            facade_id=int(fid) if fid else None,
        )

    def header(self) -> dict[str, Any]:
        """The resource's fields that do not depend on recipients."""
        return {
            "id": self.id,
            "priority": self.lane,
            "brand_id": self.brand_id,
            "reference": self.reference,
            "segments": self.segments,
            "encoding": self.encoding,
            "created_at": iso(self.created_ms),
            "send_at": iso(self.send_at_ms) if self.send_at_ms is not None else None,
            "expires_at": iso(self.expires_ms),
        }


@dataclass(frozen=True)
class MessageView:
    """One message as stored: meta, units and recipients (in request order), read from one HGETALL."""

    meta: MessageMeta
    text: str
    sealed: bool
    units: tuple[Unit, ...]
    unit_numbers: tuple[tuple[str, ...], ...]
    _fields: dict[str, str]

    @classmethod
    def parse(cls, message_id: str, fields: dict[str, str]) -> MessageView:
        meta = MessageMeta.parse(message_id, fields)
        numbers = tuple(
            tuple(n for n in fields.get(f"n:{k}", "").split(",") if n) for k in range(meta.unit_count)
        )
        units = tuple(
            Unit.parse(k, fields[f"u:{k}"]) if f"u:{k}" in fields else Unit.fresh(k, len(numbers[k]))
            for k in range(meta.unit_count)
        )
        return cls(meta, fields.get("t", ""), fields.get("x") == "1", units, numbers, fields)

    @property
    def recipient_count(self) -> int:
        return sum(len(unit) for unit in self.unit_numbers)

    def numbers(self) -> list[str]:
        return [n for unit in self.unit_numbers for n in unit]

    def recipient(self, number: str) -> Recipient | None:
        raw = self._fields.get(f"r:{number}")
        return Recipient.parse(number, raw) if raw is not None else None

    def recipients(self) -> list[Recipient]:
        fields = self._fields
        return [Recipient.parse(n, fields[f"r:{n}"]) for n in self.numbers() if f"r:{n}" in fields]

    def counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for number in self.numbers():
            raw = self._fields.get(f"r:{number}")
            if raw is not None:
                counts[raw.split("|", 1)[0]] += 1
        return dict(counts)

    def resource(self, *, minimal: bool = False) -> dict[str, Any]:
        """The contract's message resource; ``minimal`` leaves ``recipients`` out (``return=minimal``)."""
        counts = self.counts()
        body: dict[str, Any] = {
            "id": self.meta.id,
            "status": next(iter(counts)) if len(counts) == 1 else "mixed",
            "counts": counts,
        }
        body.update(self.meta.header())
        if not minimal:
            body["recipients"] = recipient_items(self.recipients())
        return body


def recipient_items(recipients: list[Recipient]) -> list[dict[str, Any]]:
    """Recipients as the resource shows them (updated times formatted once per distinct millisecond)."""
    times: dict[int, str] = {}
    out = []
    for r in recipients:
        when = times.get(r.updated_ms)
        if when is None:
            when = times[r.updated_ms] = iso(r.updated_ms)
        out.append(
            {
                "number": r.number,
                "status": r.status,
                "provider_sms_id": r.sms_id or None,
                "updated_at": when,
                "error": r.error or None,
            }
        )
    return out


@dataclass(frozen=True)
class NewMessage:
    """A validated message about to be written; ``units`` are the numbers of each uBill call."""

    id: str
    client: str
    lane: str
    brand_id: int
    text: str
    sealed: bool
    reference: str | None
    segments: int
    encoding: str
    created_ms: int
    send_at_ms: int | None
    expires_ms: int
    stop_list: bool
    units: tuple[tuple[str, ...], ...]

    @property
    def initial_status(self) -> str:
        return "scheduled" if self.send_at_ms is not None else "queued"

    @property
    def due_ms(self) -> int:
        return self.send_at_ms if self.send_at_ms is not None else self.created_ms

    @property
    def recipient_count(self) -> int:
        return sum(len(u) for u in self.units)

    def fields(self) -> dict[str, str]:
        """Everything the hash holds at acceptance: meta, units' numbers and recipients. Every field costs
        bytes in the AOF per message: empty and default values are left out (``MessageMeta.parse``), and a
        unit gets its record only once something happens to it (``Unit.fresh``)."""
        out = {
            "c": self.client,
            "p": self.lane,
            "b": str(self.brand_id),
            "t": self.text,
            "seg": str(self.segments),
            "enc": self.encoding,
            "ca": str(self.created_ms),
            "ea": str(self.expires_ms),
            "u": str(len(self.units)),
        }
        if self.reference:
            out["ref"] = self.reference
        if self.send_at_ms is not None:
            out["sa"] = str(self.send_at_ms)
        if not self.stop_list:
            out["sl"] = "0"
        if self.sealed:
            out["x"] = "1"
        recipient = f"{self.initial_status}|{self.created_ms}|||"
        for k, numbers in enumerate(self.units):
            out[f"n:{k}"] = ",".join(numbers)
            for number in numbers:
                out[f"r:{number}"] = recipient
        return out

    def timers(self) -> list[tuple[str, str]]:
        """(member, score) of each unit's lane timer: due at send_at or now.

        Units of one message share a due time; a microsecond step per unit keeps them in order (a sorted
        set orders equal scores by member, and "m:10" sorts before "m:2").
        """
        due = self.due_ms
        return [
            (keys.unit_id(self.id, k), repr(due + k / 1000) if k else str(due))
            for k in range(len(self.units))
        ]

    def view(self, fields: dict[str, str] | None = None) -> MessageView:
        """The view of what was just written (answers the 202 without reading it back), built from the
        message itself rather than by parsing ``fields`` back: the same view (tests/store/test_records.py)
        for a fifth of the CPU. ``fields``: ``self.fields()`` when the caller has made them already."""
        meta = MessageMeta(
            id=self.id,
            client=self.client,
            lane=self.lane,
            brand_id=self.brand_id,
            reference=self.reference or None,
            segments=self.segments,
            encoding=self.encoding,
            created_ms=self.created_ms,
            send_at_ms=self.send_at_ms,
            expires_ms=self.expires_ms,
            stop_list=self.stop_list,
            unit_count=len(self.units),
            facade_id=None,
        )
        units = tuple(Unit.fresh(k, len(numbers)) for k, numbers in enumerate(self.units))
        return MessageView(meta, self.text, self.sealed, units, self.units, fields or self.fields())
