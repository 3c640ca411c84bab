"""Segment counting against 3GPP TS 23.038 (GSM 03.38) and the UCS-2 limits uBill bills by.

Expectations are derived here from the standard, not from the implementation: the default alphabet and its
extension table are written out by code point as the specification lays them out, and part counts follow
from the limits (GSM-7: 160 septets single, 153 per part; UCS-2: 70 units single, 67 per part).
"""

from __future__ import annotations

import math
import sys

import pytest

from smsgw.segments import count_segments, encoding_of

ESC = "\x1b"

# 3GPP TS 23.038 §6.2.1, the GSM 7-bit default alphabet, code points 0x00-0x7F in order (16 per row).
# 0x1B is the escape to the extension table, not a character.
DEFAULT_ALPHABET = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ" + ESC + "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
BASIC = frozenset(DEFAULT_ALPHABET) - {ESC}

# 3GPP TS 23.038 §6.2.1.1, the default extension table: reached by ESC, so each costs two septets.
EXTENSION_TABLE = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
EXTENSION = frozenset(EXTENSION_TABLE.values())

GSM_SINGLE, GSM_PART = 160, 153
UCS_SINGLE, UCS_PART = 70, 67

GEORGIAN = "გამარჯობა"  # "hello": Mkhedruli letters, U+10D0..U+10FF, all in the BMP
EMOJI = "😀"  # U+1F600, outside the BMP: a UTF-16 surrogate pair


def gsm_parts(septets: int) -> int:
    """Parts for a text of single-septet characters only (no escape pair to keep whole)."""
    return 1 if septets <= GSM_SINGLE else math.ceil(septets / GSM_PART)


def ucs_parts(units: int) -> int:
    """Parts for a text of BMP characters only (no surrogate pair to keep whole)."""
    return 1 if units <= UCS_SINGLE else math.ceil(units / UCS_PART)


def test_the_transcribed_tables_are_the_standard_ones() -> None:
    # 128 code points, ESC at 0x1B, 127 characters; the extension table adds 10 more, none of them basic.
    assert len(DEFAULT_ALPHABET) == 128
    assert DEFAULT_ALPHABET.index(ESC) == 0x1B
    assert len(BASIC) == 127
    assert DEFAULT_ALPHABET[0x0A] == "\n"
    assert DEFAULT_ALPHABET[0x0D] == "\r"
    assert DEFAULT_ALPHABET[0x09] == "\N{LATIN CAPITAL LETTER C WITH CEDILLA}"
    assert DEFAULT_ALPHABET[0x24] == "\N{CURRENCY SIGN}"
    assert DEFAULT_ALPHABET[0x10] == "\N{GREEK CAPITAL LETTER DELTA}"
    assert len(EXTENSION) == 10
    assert not EXTENSION & BASIC


@pytest.mark.parametrize("char", sorted(BASIC), ids=lambda c: f"U+{ord(c):04X}")
def test_each_basic_character_is_gsm7_and_costs_one_septet(char: str) -> None:
    assert encoding_of(char) == "GSM-7"
    assert count_segments(char * GSM_SINGLE) == (1, "GSM-7")
    assert count_segments(char * (GSM_SINGLE + 1)) == (2, "GSM-7")


@pytest.mark.parametrize("char", sorted(EXTENSION), ids=lambda c: f"U+{ord(c):04X}")
def test_each_extension_character_is_gsm7_and_costs_two_septets(char: str) -> None:
    assert encoding_of(char) == "GSM-7"
    # One extension character + 158 basic ones = 160 septets; one more basic character overflows.
    assert count_segments(char + "a" * (GSM_SINGLE - 2)) == (1, "GSM-7")
    assert count_segments(char + "a" * (GSM_SINGLE - 1)) == (2, "GSM-7")
    assert count_segments(char * (GSM_SINGLE // 2)) == (1, "GSM-7")
    assert count_segments(char * (GSM_SINGLE // 2 + 1)) == (2, "GSM-7")


def test_exactly_the_standard_characters_are_gsm7() -> None:
    gsm = {chr(cp) for cp in range(sys.maxunicode + 1) if encoding_of(chr(cp)) == "GSM-7"}
    assert gsm == BASIC | EXTENSION


@pytest.mark.parametrize(
    "char",
    [
        "ç",  # only the capital Ç is in the table
        "`",  # 0x60 of ASCII is ¿ in GSM-7
        "\t",
        ESC,
        "\x00",
        "á",
        "\N{GREEK CAPITAL LETTER ALPHA}",  # GSM-7 has only the Greek capitals unlike Latin ones
        "\N{OHM SIGN}",  # not GREEK CAPITAL LETTER OMEGA
        "\N{INCREMENT}",  # not GREEK CAPITAL LETTER DELTA
        "’",
        "“",
        "—",
        "\u00a0",
        "ა",
        EMOJI,
    ],
    ids=lambda c: f"U+{ord(c):04X}",
)
def test_characters_outside_the_alphabet_force_ucs2(char: str) -> None:
    assert encoding_of(char) == "UCS-2"
    assert count_segments("Hello " + char)[1] == "UCS-2"


@pytest.mark.parametrize(
    ("length", "parts"),
    [(1, 1), (159, 1), (160, 1), (161, 2), (305, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_boundaries(length: int, parts: int) -> None:
    assert count_segments("a" * length) == (parts, "GSM-7")


@pytest.mark.parametrize("parts", range(2, 11))
def test_gsm7_parts_hold_153_septets(parts: int) -> None:
    full = GSM_PART * parts
    assert count_segments("x" * full) == (parts, "GSM-7")
    assert count_segments("x" * (full + 1)) == (parts + 1, "GSM-7")
    assert gsm_parts(full) == parts  # the helper agrees with the limits it encodes


def test_an_escape_pair_is_not_split_across_parts() -> None:
    # 152 septets leave one septet in part 1; "€" needs two, so it opens part 2 (2 + 151 = 153 septets)
    # and the last character spills into a third part, although 306 septets would fit two full parts.
    text = "a" * 152 + "€" + "a" * 152
    assert 2 * GSM_PART == 152 + 2 + 152
    assert count_segments(text) == (3, "GSM-7")
    # Shift the "€" one character left and it fits in part 1: two parts again.
    assert count_segments("a" * 151 + "€" + "a" * 153) == (2, "GSM-7")


def test_extension_only_text_fits_76_characters_per_part() -> None:
    # 153 is odd, so a part holds 76 escape pairs (152 septets), not 76.5.
    assert count_segments("€" * 80) == (1, "GSM-7")  # 160 septets
    assert count_segments("€" * 81) == (2, "GSM-7")
    assert count_segments("€" * 152) == (2, "GSM-7")
    assert count_segments("€" * 153) == (3, "GSM-7")  # 306 septets, yet three parts


@pytest.mark.parametrize(
    ("length", "parts"),
    [(1, 1), (69, 1), (70, 1), (71, 2), (133, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs2_boundaries(length: int, parts: int) -> None:
    assert count_segments("ა" * length) == (parts, "UCS-2")


@pytest.mark.parametrize("parts", range(2, 11))
def test_ucs2_parts_hold_67_units(parts: int) -> None:
    full = UCS_PART * parts
    assert count_segments("ж" * full) == (parts, "UCS-2")
    assert count_segments("ж" * (full + 1)) == (parts + 1, "UCS-2")
    assert ucs_parts(full) == parts


def test_astral_characters_count_two_units() -> None:
    assert len(EMOJI.encode("utf-16-le")) // 2 == 2
    assert count_segments(EMOJI * 35) == (1, "UCS-2")  # 70 units
    assert count_segments(EMOJI * 36) == (2, "UCS-2")  # 72 units
    assert count_segments(EMOJI + "a" * 68) == (1, "UCS-2")
    assert count_segments(EMOJI + "a" * 69) == (2, "UCS-2")


def test_a_surrogate_pair_is_not_split_across_parts() -> None:
    # 66 units leave one unit in part 1; the pair opens part 2, and the last character needs a third part.
    assert 2 * UCS_PART == 66 + 2 + 66
    assert count_segments("a" * 66 + EMOJI + "a" * 66) == (3, "UCS-2")
    assert count_segments("a" * 65 + EMOJI + "a" * 67) == (2, "UCS-2")
    # A part holds 33 pairs (66 units): 67 emoji are 134 units, yet three parts.
    assert count_segments(EMOJI * 66) == (2, "UCS-2")
    assert count_segments(EMOJI * 67) == (3, "UCS-2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GEORGIAN, (1, "UCS-2")),
        ("თქვენი კოდია 4821", (1, "UCS-2")),
        (GEORGIAN * 7 + "ა" * 7, (1, "UCS-2")),  # 70 characters
        (GEORGIAN * 8, (2, "UCS-2")),  # 72 characters
    ],
)
def test_georgian_text_is_ucs2(text: str, expected: tuple[int, str]) -> None:
    assert count_segments(text) == expected


def test_one_foreign_character_switches_the_whole_text_to_ucs2() -> None:
    latin = "Your code is 4821. Do not share it with anyone! " * 2  # 96 GSM-7 characters
    assert len(latin) == 96
    assert count_segments(latin) == (1, "GSM-7")
    assert count_segments(latin + "ა") == (ucs_parts(97), "UCS-2")
    assert count_segments(latin + "ა") == (2, "UCS-2")
    # The extension table stays GSM-7 (two septets each), a GSM-7 lookalike does not.
    assert count_segments(latin + "[€]") == (1, "GSM-7")
    assert count_segments(latin + "’") == (2, "UCS-2")
    # An emoji costs two units in the UCS-2 count: 96 + 2 = 98 units, still two parts.
    assert count_segments(latin + EMOJI) == (2, "UCS-2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 1600, (math.ceil(1600 / GSM_PART), "GSM-7")),  # 11
        ("€" * 1600, (math.ceil(1600 / (GSM_PART // 2)), "GSM-7")),  # 76 pairs a part: 22
        ("ა" * 1600, (math.ceil(1600 / UCS_PART), "UCS-2")),  # 24
        (EMOJI * 1600, (math.ceil(1600 / (UCS_PART // 2)), "UCS-2")),  # 33 pairs a part: 49
    ],
    ids=["gsm7", "extension", "georgian", "emoji"],
)
def test_longest_allowed_text(text: str, expected: tuple[int, str]) -> None:
    assert len(text) == 1600
    assert count_segments(text) == expected


def test_longest_allowed_text_mixed() -> None:
    # 1,600 characters: 1,590 basic ones and 10 "€" spread out, never at a part boundary:
    # 1,610 septets → ceil(1610 / 153) = 11 parts.
    text = ("a" * 158 + "€") * 10 + "a" * 10
    assert len(text) == 1600
    assert count_segments(text) == (math.ceil(1610 / GSM_PART), "GSM-7")
    assert count_segments(text)[0] == 11
