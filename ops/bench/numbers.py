"""Distinct, valid Georgian mobile numbers (``995`` + a mobile prefix + six digits), as uBill wants them.

The prefixes are the 5xx ranges that ``phonenumbers`` (the gateway's own validator) accepts as valid Georgian
numbers on this machine, so every generated number passes the gateway's validation.
"""

from __future__ import annotations

import functools

import phonenumbers

__all__ = ["NumberSource", "mobile_prefixes"]

# Both ends of every block of 10,000 (the national pattern never splits finer than that within a prefix).
_PROBES = tuple(f"{block:02d}{end}" for block in range(100) for end in ("0000", "9999"))


@functools.cache
def mobile_prefixes() -> tuple[int, ...]:
    """Three-digit prefixes 500..599 whose whole range is valid for GE (25 with phonenumbers 9.0; 500 is only
    partly valid, so it is left out)."""
    found = []
    for prefix in range(500, 600):
        if all(phonenumbers.is_valid_number(phonenumbers.parse(f"+995{prefix}{tail}")) for tail in _PROBES):
            found.append(prefix)
    if not found:
        raise RuntimeError("phonenumbers knows no valid Georgian mobile range")
    return tuple(found)


class NumberSource:
    """Hands out numbers never handed out before in this run, spread over every mobile prefix."""

    def __init__(self, start: int = 0) -> None:
        self._next = start
        self._prefixes = mobile_prefixes()

    def take(self, count: int) -> list[str]:
        prefixes = self._prefixes
        width = len(prefixes)
        first = self._next
        self._next += count
        if self._next > width * 1_000_000:
            raise RuntimeError("ran out of distinct numbers")
        return [f"995{prefixes[i % width]}{i // width:06d}" for i in range(first, first + count)]
