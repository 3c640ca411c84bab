"""What a verification SMS costs: the README's table of segments per locale comes from these checks."""

from __future__ import annotations

import pytest

from smsgw.segments import count_segments
from smsgw.verify import templates
from smsgw.verify.config import MAX_BRAND_NAME


def longest_brand(locale: str, digits: int, one_segment: bool = True, full: bool = False) -> int:
    """The longest ASCII brand name whose text still fits one segment (the fullest variant, or any)."""
    fits = []
    for length in range(1, MAX_BRAND_NAME + 1):
        code, brand = "1" * digits, "A" * length
        text = templates._WITH_BRAND[locale][0].format(code=code, brand=brand) if full else None
        text = text or templates.render(locale, code, brand)
        if (count_segments(text)[0] == 1) == one_segment:
            fits.append(length)
    return max(fits, default=0)


@pytest.mark.parametrize("digits", range(4, 11))
@pytest.mark.parametrize("locale", templates.LOCALES)
def test_every_code_length_fits_one_segment_without_a_brand(locale: str, digits: int) -> None:
    text = templates.render(locale, "7" * digits, None)
    assert count_segments(text) == (1, "GSM-7" if locale == "en" else "UCS-2")
    assert text.startswith("7" * digits)


def test_english_is_one_gsm7_segment_for_every_allowed_brand_name() -> None:
    assert longest_brand("en", 10, full=True) == MAX_BRAND_NAME  # 40 characters: the full text, 1 segment
    text = templates.render("en", "123456", "Acme")
    assert text == "123456 is your Acme verification code. Do not share it with anyone."
    assert count_segments(text) == (1, "GSM-7")


def test_georgian_is_one_ucs2_segment_up_to_these_brand_lengths() -> None:
    # The README's table: the full text up to 13 characters of brand name with a 6-digit code (9 with 10
    # digits), a shorter wording up to 38 (34), two segments beyond.
    assert (longest_brand("ka", 6, full=True), longest_brand("ka", 6)) == (13, 38)
    assert (longest_brand("ka", 10, full=True), longest_brand("ka", 10)) == (9, 34)
    assert count_segments(templates.render("ka", "123456", "A" * 39)) == (2, "UCS-2")
    text = templates.render("ka", "123456", "Acme")
    assert text == "Acme: 123456 არის თქვენი დადასტურების კოდი. არავის გაუზიაროთ."


def test_a_brand_name_outside_gsm7_makes_english_ucs2_and_still_one_segment_up_to_32() -> None:
    assert count_segments(templates.render("en", "123456", "ბანკი")) == (1, "UCS-2")
    lengths = [n for n in range(1, 41) if count_segments(templates.render("en", "123456", "ბ" * n))[0] == 1]
    assert max(lengths) == 32


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_every_text_says_not_to_share_it(locale: str) -> None:
    warning = {"en": "Do not share it", "ka": "არავის გაუზიაროთ"}[locale]
    for brand in (None, "Acme", "A" * 40):
        assert warning in templates.render(locale, "123456", brand)
