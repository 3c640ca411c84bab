"""The verdict's shape: the figures (columns), which must be 0, and the per-fault-kind rows that hold them."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ops.soak.records import FaultWindow

__all__ = ["COLUMNS", "MUST_BE_ZERO", "Verdict", "active_faults"]

COLUMNS: Final = (
    ("sends", "logical sends"),
    ("accepted", "recipients acknowledged (202, or facade statusID 0)"),
    ("stored_unacked", "recipients stored although no answer said so (timeout, 503, ...)"),
    ("sent_once", "recipients uBill got exactly once"),
    ("unknown_at_ubill", "recipients left `unknown` that uBill got"),
    ("unknown_not_at_ubill", "recipients left `unknown` that uBill never got"),
    ("lost", "acknowledged, never at uBill, and no status explains it (queued for ever, gone)"),
    ("duplicated", "numbers uBill got more than once (not explained below)"),
    ("dup_accept_5xx", "duplicates after uBill accepted a call and answered 5xx (documented, apart)"),
    ("dup_caller_retry", "duplicates from a caller's retry without key after an ambiguous answer (apart)"),
    (
        "matched_foreign",
        "a lost answer matched to another integration's callback (the contract's rule, apart)",
    ),
    ("false_delivered", "`delivered` although uBill never got the number"),
    ("false_status", "submitted/sent/pending/error without uBill, or cancelled/expired/queued with uBill"),
    ("contract", "answers that broke the contract: 5xx other than 503, 503 without Retry-After, 503 stored"),
    ("events_missing", "recipients whose status is not the last event of its stream sequence"),
    ("events_extra", "recipients with a duplicate, backward or after-terminal event, or events for nothing"),
)
MUST_BE_ZERO: Final = (
    "lost",
    "duplicated",
    "false_delivered",
    "false_status",
    "contract",
    "events_missing",
    "events_extra",
)
EXAMPLES_PER_REASON: Final = 3


@dataclass
class Verdict:
    rows: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    reasons: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kinds: Iterable[str], figure: str, reason: str = "", example: str | None = None) -> None:
        """Count one for ``figure`` in each row of ``kinds`` and in ``all``; keep examples per reason."""
        for kind in {*kinds, "all"}:
            self.rows[kind][figure] += 1
        if reason:
            self.reasons[figure][reason] += 1
        if example is not None and self.reasons[figure][reason] <= EXAMPLES_PER_REASON:
            self.examples[figure].append(f"[{reason}] {example}" if reason else example)

    @property
    def failures(self) -> dict[str, int]:
        return {f: self.rows["all"][f] for f in MUST_BE_ZERO if self.rows["all"][f]}


def active_faults(faults: Sequence[FaultWindow], start: float, end: float) -> set[str]:
    kinds = {f.kind for f in faults if f.started <= end and f.ended >= start}
    return kinds or {"none"}
