"""Every Redis name of phone verification, and how long each lives (the rest of the map: ``smsgw.keys``).

    smsgw:ver:{id}                  hash   one verification (fields below); expires retention after it does
    smsgw:ver:expiries              zset   ids of pending verifications scored by expiry (ms), for the sweep
    smsgw:ver:win:n:{number}        zset   SMS sent to a number (sliding window log), expires with the window
    smsgw:ver:win:p:{prefix}        zset   SMS sent to a prefix (the number without its last 4 digits)
    smsgw:ver:win:c:{client}        zset   SMS sent for a client
    smsgw:ver:guard:s:{prefix}      zset   verifications started in a prefix, scored by start (guard window)
    smsgw:ver:guard:a:{prefix}      zset   of those, the approved ones (scored by their start)
    smsgw:ver:block:{prefix}        string the prefix is blocked by the pumping guard (expires with the block)
    smsgw:ver:blocks                zset   blocked prefixes scored by the block's end (for the gauge)
    smsgw:idem:{client}:{hash}      string Idempotency-Key of POST /v1/verifications: the hash covers the
                                           endpoint too, so keys are per client and per endpoint

Verification hash fields: c client, to number, st status, ref reference, b brand, loc locale, code the sealed
code (removed once the verification is final), ca/ea created/expires (ms), sends, att attempts, last the last
send (ms), mid the latest SMS's message id.

Events go where message events go (``smsgw:stream:{client}``, ``smsgw:events``, ``smsgw:events:{client}``),
with ``"kind": "verification"`` in the object and a ``kind`` field beside ``event`` in the stream entry.
"""

from __future__ import annotations

import hashlib

from smsgw.store import keys as core

__all__ = [
    "EXPIRIES",
    "LUA_CONSTANTS",
    "LUA_PREFIXES",
    "VERIFY_PREFIX",
    "idempotency",
    "prefix_of",
    "verification",
]

VERIFY_PREFIX = core.PREFIX + "ver:"
EXPIRIES = VERIFY_PREFIX + "expiries"
BLOCKS = VERIFY_PREFIX + "blocks"
SWEEP_LOCK = "verify-sweep"
EXPIRIES_TTL = 2 * 3600  # beyond the longest verification (1 h): gone only when no verification was made
PREFIX_DROP = 4  # a prefix is the number without its last 4 digits (Auth0's, and the contract's, definition)


def verification(verification_id: str) -> str:
    return f"{VERIFY_PREFIX}{verification_id}"


def prefix_of(number: str) -> str:
    return number[:-PREFIX_DROP]


def number_window(number: str) -> str:
    return f"{VERIFY_PREFIX}win:n:{number}"


def prefix_window(prefix: str) -> str:
    return f"{VERIFY_PREFIX}win:p:{prefix}"


def client_window(client: str) -> str:
    return f"{VERIFY_PREFIX}win:c:{client}"


def guard_started(prefix: str) -> str:
    return f"{VERIFY_PREFIX}guard:s:{prefix}"


def guard_approved(prefix: str) -> str:
    return f"{VERIFY_PREFIX}guard:a:{prefix}"


def block(prefix: str) -> str:
    return f"{VERIFY_PREFIX}block:{prefix}"


def idempotency(client: str, key: str) -> str:
    """Beside POST /v1/messages' records, in its own scope: keys are per client and per endpoint."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return core.idempotency(client, "verifications", digest)


# For the verification scripts' prelude (``scripts.py``): prefixes as table V, the rest as table VC.
LUA_PREFIXES: dict[str, str] = {
    "ver": verification(""),
    "win_n": number_window(""),
    "win_p": prefix_window(""),
    "win_c": client_window(""),
    "guard_s": guard_started(""),
    "guard_a": guard_approved(""),
    "block": block(""),
}
LUA_CONSTANTS: dict[str, str | int] = {
    "EXPIRIES": EXPIRIES,
    "EXPIRIES_TTL": EXPIRIES_TTL,
    "PREFIX_DROP": PREFIX_DROP,
}
