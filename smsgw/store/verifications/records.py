"""The verification record: how it lives in its Redis hash and how it reads as the API resource.

The hash never holds the code in clear: ``code`` is the sealed code (and is removed once the verification is
final). Field names are listed in ``store.verifications.keys``; the Lua scripts use the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smsgw.clock import iso

__all__ = ["STATUSES", "NewVerification", "Verification"]

STATUSES = ("pending", "approved", "failed", "expired")
FINAL = frozenset({"approved", "failed", "expired"})


@dataclass(frozen=True)
class NewVerification:
    id: str
    client: str
    number: str
    brand_id: int
    locale: str
    reference: str | None
    sealed_code: str
    created_ms: int
    expires_ms: int
    message_id: str

    def fields(self) -> list[str]:
        """The hash at creation, flat (field, value, ...), as the create script takes it."""
        pairs = {
            "c": self.client,
            "to": self.number,
            "st": "pending",
            "ref": self.reference or "",
            "b": str(self.brand_id),
            "loc": self.locale,
            "code": self.sealed_code,
            "ca": str(self.created_ms),
            "ea": str(self.expires_ms),
            "ua": str(self.created_ms),
            "sends": "1",
            "att": "0",
            "last": str(self.created_ms),
            "mid": self.message_id,
        }
        return [item for pair in pairs.items() for item in pair]


@dataclass(frozen=True)
class Verification:
    id: str
    client: str
    number: str
    status: str  # as stored: a pending one past its expiry reads "expired" (``status_at``)
    reference: str | None
    brand_id: int
    locale: str
    sealed_code: str
    created_ms: int
    expires_ms: int
    sends: int
    attempts: int
    last_send_ms: int
    message_id: str

    @classmethod
    def from_hash(cls, verification_id: str, fields: dict[str, str]) -> Verification:
        return cls(
            id=verification_id,
            client=fields["c"],
            number=fields["to"],
            status=fields["st"],
            reference=fields.get("ref") or None,
            brand_id=int(fields["b"]),
            locale=fields["loc"],
            sealed_code=fields.get("code", ""),
            created_ms=int(fields["ca"]),
            expires_ms=int(fields["ea"]),
            sends=int(fields["sends"]),
            attempts=int(fields["att"]),
            last_send_ms=int(fields["last"]),
            message_id=fields["mid"],
        )

    def status_at(self, now_ms: int) -> str:
        """Expiry is decided by time, not by the sweep: the sweep only publishes it (within a minute)."""
        return "expired" if self.status == "pending" and now_ms >= self.expires_ms else self.status

    def resource(self, now_ms: int) -> dict[str, Any]:
        """The contract's resource: the code never appears in it."""
        return {
            "id": self.id,
            "to": self.number,
            "status": self.status_at(now_ms),
            "expires_at": iso(self.expires_ms),
            "sends": self.sends,
            "attempts": self.attempts,
            "message_id": self.message_id,
            "reference": self.reference,
        }
