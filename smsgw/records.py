"""The message record: how a message lives in its Redis hash, and how it reads as the API resource.

Field layout is documented in ``smsgw.keys``; the Lua scripts read and write the same compact strings.
"""

from __future__ import annotations

import itertools
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from smsgw import keys
from smsgw.clock import iso, now_ms

__all__ = ["NewMessage", "Recipient", "Unit", "new_message_id", "resource"]

DISPATCH_FUNCTION = "dispatch"


class Recipient(NamedTuple):
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
    k: int
    state: str
    owner: str
    sms_id: str
    tries: int
    reason: str

    @classmethod
    def parse(cls, k: int, raw: str) -> Unit:
        state, owner, sms_id, tries, reason = raw.split("|", 4)
        return cls(k, state, owner, sms_id, int(tries or 0), reason)


_PROCESS_TAG = secrets.token_hex(5)  # random per process: ids from different gateways never collide
_SEQUENCE = itertools.count(secrets.randbelow(1 << 20))


def new_message_id() -> str:
    """Sortable by creation time (hex milliseconds first), unique (process tag + counter), and cheap:
    no system call per id on the hot path. Ids are not secrets: every read checks the owning client."""
    return f"msg_{now_ms():011x}{_PROCESS_TAG}{next(_SEQUENCE) & 0xFFFFFF:06x}"


@dataclass(frozen=True)
class NewMessage:
    """A validated message about to be written; ``units`` are the numbers of each uBill call."""

    id: str
    client: str
    lane: str
    brand_id: int
    text: str
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

    def fields(self) -> dict[str, str]:
        """Everything the hash holds at acceptance, meta, units and recipients."""
        out = {
            "c": self.client,
            "p": self.lane,
            "b": str(self.brand_id),
            "t": self.text,
            "ref": self.reference or "",
            "seg": str(self.segments),
            "enc": self.encoding,
            "ca": str(self.created_ms),
            "sa": "" if self.send_at_ms is None else str(self.send_at_ms),
            "ea": str(self.expires_ms),
            "sl": "1" if self.stop_list else "0",
            "n": str(sum(len(u) for u in self.units)),
            "u": str(len(self.units)),
        }
        recipient = f"{self.initial_status}|{self.created_ms}|||"
        for k, numbers in enumerate(self.units):
            out[f"u:{k}"] = "new||||"
            out[f"n:{k}"] = ",".join(numbers)
            for number in numbers:
                out[f"r:{number}"] = recipient
        return out

    def jobs(self) -> list[tuple[str, str, str, str]]:
        """(arq job key, arq job record, job id, queue score) per unit; arq's record format, as JSON.

        Units of one message share a due time; a microsecond step per unit keeps them in order (a sorted
        set orders equal scores by member, and "m:10" sorts before "m:2").
        """
        out = []
        for k, numbers in enumerate(self.units):
            job_id = keys.unit_id(self.id, k)
            record: dict[str, object] = {
                "t": None,
                "f": DISPATCH_FUNCTION,
                "a": [self.id, k, len(numbers)],
                "k": {},
                "et": self.created_ms,
            }
            score = repr(self.due_ms + k / 1000) if k else str(self.due_ms)
            out.append((keys.job(job_id), orjson.dumps(record).decode(), job_id, score))
        return out


def resource(message_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """The contract's message resource from a message hash (or from ``NewMessage.fields``)."""
    recipients = [Recipient.parse(number, fields[f"r:{number}"]) for number in numbers_in_order(fields)]
    times: dict[int, str] = {}  # recipients mostly share a few update times: format each once
    counts = Counter(r.status for r in recipients)
    send_at = fields.get("sa") or ""
    return {
        "id": message_id,
        "status": next(iter(counts)) if len(counts) == 1 else "mixed",
        "counts": dict(counts),
        "priority": fields["p"],
        "brand_id": int(fields["b"]),
        "reference": fields.get("ref") or None,
        "segments": int(fields["seg"]),
        "encoding": fields["enc"],
        "created_at": iso(int(fields["ca"])),
        "send_at": iso(int(send_at)) if send_at else None,
        "expires_at": iso(int(fields["ea"])),
        "recipients": [
            {
                "number": r.number,
                "status": r.status,
                "provider_sms_id": r.sms_id or None,
                "updated_at": times[r.updated_ms]
                if r.updated_ms in times
                else _remember(times, r.updated_ms),
                "error": r.error or None,
            }
            for r in recipients
        ],
    }


def _remember(times: dict[int, str], ms: int) -> str:
    times[ms] = iso(ms)
    return times[ms]


def numbers_in_order(fields: dict[str, str]) -> list[str]:
    """The message's numbers in request order (a large Redis hash does not keep insertion order)."""
    count = int(fields.get("u", "0"))
    return [n for k in range(count) for n in fields.get(f"n:{k}", "").split(",") if n]
