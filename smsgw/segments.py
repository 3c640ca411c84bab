"""What uBill bills for a text: its encoding and its number of SMS parts.

GSM-7 (3GPP TS 23.038) fits 160 septets in one SMS and 153 per part of a multipart SMS; characters of the
extension table take two septets (escape + char) and an escape pair is never split across parts. Anything
outside GSM-7 goes as UCS-2: 70 UTF-16 units in one SMS, 67 per part; characters outside the BMP take two
units (a surrogate pair), and a pair is never split either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

__all__ = ["Encoding", "count_segments", "encoding_of"]

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_LIMITS: dict[Encoding, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


def encoding_of(text: str) -> Encoding:
    return "GSM-7" if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else "UCS-2"


def _widths(text: str, encoding: Encoding) -> Iterable[int]:
    if encoding == "GSM-7":
        return (2 if c in GSM7_EXTENSION else 1 for c in text)
    return (2 if ord(c) > 0xFFFF else 1 for c in text)


def count_segments(text: str) -> tuple[int, Encoding]:
    """Number of SMS parts and the encoding, packing parts greedily as handsets and SMSCs do."""
    encoding = encoding_of(text)
    single, per_part = _LIMITS[encoding]
    widths = list(_widths(text, encoding))
    if sum(widths) <= single:
        return 1, encoding
    parts, used = 1, 0
    for width in widths:
        if used + width > per_part:
            parts, used = parts + 1, 0
        used += width
    return parts, encoding
