"""Verification codes: drawn from the OS CSPRNG, compared in constant time, never logged or returned.

A code of n digits is uniform over 10**n values (``secrets.randbelow``, no modulo bias), zero-padded. Six
digits, the default, is 19.9 bits: NIST SP 800-63B's "at least 6 decimal digits"; 4 and 5 are the caller's
choice, weaker by 100x and 10x.
"""

from __future__ import annotations

import hmac
import secrets

from smsgw.clock import now_ms

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "codes_match", "new_code", "new_verification_id"]

MIN_LENGTH = 4
MAX_LENGTH = 10
DEFAULT_LENGTH = 6


def new_code(length: int = DEFAULT_LENGTH) -> str:
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"a code has {MIN_LENGTH} to {MAX_LENGTH} digits")
    return f"{secrets.randbelow(10**length):0{length}d}"


def codes_match(given: str, expected: str) -> bool:
    """Constant-time for equal lengths (the time says nothing about which digit differs); a different length
    is no secret, every code of a verification has the one length the caller chose."""
    return hmac.compare_digest(given.encode(), expected.encode())


def new_verification_id() -> str:
    """Creation time first (sortable), then 64 random bits: ids are unguessable, and every read still checks
    the owning client (404 for another's)."""
    return f"ver_{now_ms():011x}{secrets.token_hex(8)}"
