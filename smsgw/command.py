"""The send command: what any way in (POST /v1/messages, the uBill facade, dead-letter replay, verifications)
asks the gateway to send, with the contract's limits written once.

Each way in parses its own input and reports problems in its own shape; the limits, the default validity per
lane, the scheduling window and how a command becomes a stored message (units of ``SMSGW_BATCH_SIZE``
numbers, billed segments) are decided here.
"""

from __future__ import annotations

from dataclasses import dataclass

from smsgw.segments import count_segments
from smsgw.store.records import MessageView, NewMessage, new_message_id

__all__ = [
    "DEFAULT_VALIDITY",
    "MAX_OTP_RECIPIENTS",
    "MAX_RECIPIENTS",
    "MAX_REFERENCE",
    "MAX_SCHEDULE_AHEAD_S",
    "MAX_TEXT",
    "MAX_VALIDITY",
    "SendCommand",
    "schedule_problem",
]

MAX_RECIPIENTS = 10_000
MAX_OTP_RECIPIENTS = 10
MAX_TEXT = 1_600
MAX_REFERENCE = 128
MAX_SCHEDULE_AHEAD_S = 30 * 86_400
MAX_VALIDITY = 30 * 86_400
DEFAULT_VALIDITY = {"otp": 300, "transactional": 86_400, "bulk": 86_400}


def schedule_problem(send_at_ms: int, now_ms: int) -> str | None:
    """Why ``send_at`` is not acceptable, or None: in the future and at most 30 days ahead."""
    if send_at_ms <= now_ms:
        return "must be in the future"
    if send_at_ms - now_ms > MAX_SCHEDULE_AHEAD_S * 1000:
        return "must be at most 30 days ahead"
    return None


@dataclass(frozen=True)
class SendCommand:
    """A validated send. ``sealed``: ``text`` is encrypted (verification codes); ``billing`` then gives the
    segments and encoding of the clear text, which only the worker sees."""

    numbers: tuple[str, ...]
    text: str
    brand_id: int
    lane: str
    send_at_ms: int | None = None
    validity_s: int | None = None
    stop_list: bool = True
    reference: str | None = None
    sealed: bool = False
    billing: tuple[int, str] | None = None

    @classmethod
    def again(cls, view: MessageView, numbers: tuple[str, ...]) -> SendCommand:
        """A stored message sent once more to ``numbers`` (a dead-letter replay): its text as stored (still
        sealed if it was) and its original billing, with the lane's default validity from now."""
        meta = view.meta
        return cls(
            numbers=numbers,
            text=view.text,
            brand_id=meta.brand_id,
            lane=meta.lane,
            stop_list=meta.stop_list,
            reference=meta.reference,
            sealed=view.sealed,
            billing=(meta.segments, meta.encoding),
        )

    @property
    def validity(self) -> int:
        return self.validity_s if self.validity_s is not None else DEFAULT_VALIDITY[self.lane]

    def message(
        self, client: str, *, now_ms: int, batch_size: int, message_id: str | None = None
    ) -> NewMessage:
        """The message to store: numbers in units of ``batch_size`` (one uBill call each, whatever the text;
        the worker sends a call too long for a GET URL as POST JSON)."""
        segments, encoding = self.billing or count_segments(self.text)
        numbers = self.numbers
        units = tuple(tuple(numbers[i : i + batch_size]) for i in range(0, len(numbers), batch_size))
        start = self.send_at_ms if self.send_at_ms is not None else now_ms
        return NewMessage(
            id=message_id or new_message_id(),
            client=client,
            lane=self.lane,
            brand_id=self.brand_id,
            text=self.text,
            sealed=self.sealed,
            reference=self.reference,
            segments=segments,
            encoding=encoding,
            created_ms=now_ms,
            send_at_ms=self.send_at_ms,
            expires_ms=start + self.validity * 1000,
            stop_list=self.stop_list,
            units=units,
        )
