"""``Idempotency-Key``: per client and endpoint, 24 h, keyed on the canonical JSON of the request.

The key is decided in the same script as the write (``store/lua/accept.lua``): a replay finds the finished
record, a different body is refused, and two concurrent identical requests store one message (the second
answers the first's, as a replay). There is no "pending" state left for a crashed request to leak.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from smsgw.errors import BadRequest
from smsgw.settings import Client
from smsgw.store.messages import Idempotency

__all__ = ["HEADER", "body_hash", "idempotency"]

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
HASH_HEX = 32  # 128 bits of sha256: collision-free in practice, and half the bytes in every record


def body_hash(body: Any) -> str:
    """The same JSON value hashes the same whatever its formatting or key order."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:HASH_HEX]


def idempotency(key: str | None, client: Client, scope: str, body: Any) -> Idempotency | None:
    """The request's key (None without one); 400 for a malformed key."""
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise BadRequest(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    digest = hashlib.sha256(key.encode()).hexdigest()[:HASH_HEX]
    return Idempotency(client.name, scope, digest, body_hash(body))
