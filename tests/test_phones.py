"""Phone number normalisation to uBill's form (E.164 digits without "+") and masking for logs.

Expected numbers are E.164 forms written from the numbering plans (Georgia +995 with 9-digit national
numbers, mobiles starting with 5; NANP +1), cross-checked against phonenumbers' own metadata where a test
relies on a number being valid or not.
"""

from __future__ import annotations

import contextlib
import re

import phonenumbers
import pytest

from smsgw.phones import NumberError, mask, normalise, normalise_many

GE = frozenset({"GE"})
GE_US = frozenset({"GE", "US"})

NUMBER = "995511194242"  # +995 511 19 42 42, a Georgian mobile
OTHER = "995555123456"  # +995 555 12 34 56, another one


def _example(region: str) -> str:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    return str(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))[1:]


# phonenumbers' example US number (12015550123): a valid number of a country that is not allowed by default.
US = _example("US")


def _valid(e164: str) -> bool:
    return bool(phonenumbers.is_valid_number(phonenumbers.parse(e164)))


def _region(e164: str) -> str:
    return str(phonenumbers.region_code_for_number(phonenumbers.parse(e164)))


@pytest.mark.parametrize(("e164", "region"), [(NUMBER, "GE"), (OTHER, "GE"), (US, "US")])
def test_fixtures_are_what_the_tests_assume(e164: str, region: str) -> None:
    assert _valid("+" + e164)
    assert _region("+" + e164) == region


@pytest.mark.parametrize(
    "raw",
    [
        "+995511194242",
        "+995 511 19 42 42",
        "+995 (511) 19-42-42",
        "(+995) 511-194-242",
        "+995-511-19-42-42",
        "+995 [511] 19 42 42",
        "00995511194242",
        "00 995 511 19 42 42",
        "00995 (511) 194242",
        "995511194242",
        "995 511 19 42 42",
        "995-511-194-242",
        "(995) 511 19 42 42",
        " +995 511 19 42 42 ",
        "+995\u00a0511\u00a019\u00a042\u00a042",  # no-break spaces, as pasted from documents
        "+995\t511194242",
    ],
)
def test_international_formats(raw: str) -> None:
    assert normalise(raw, GE) == NUMBER
    assert normalise(raw, GE, default_region="GE") == NUMBER
    assert normalise_many([raw], GE) == ([NUMBER], [])


@pytest.mark.parametrize(
    "raw", ["511 19 42 42", "511194242", "511-19-42-42", "(511) 19 42 42", "511 194 242"]
)
def test_national_georgian_numbers_when_georgia_is_the_only_allowed_country(raw: str) -> None:
    assert normalise(raw, GE, default_region="GE") == NUMBER
    assert normalise_many([raw], GE) == ([NUMBER], [])


def test_national_numbers_need_a_default_region() -> None:
    with pytest.raises(ValueError, match="not a valid phone number"):
        normalise("511 19 42 42", GE)
    # With two allowed countries a national number is ambiguous and is not guessed.
    numbers, errors = normalise_many(["511 19 42 42"], GE_US)
    assert numbers == []
    assert [e.index for e in errors] == [0]


@pytest.mark.parametrize(
    ("national", "foreign_region"),
    [("597 53 88 63", "SR"), ("595 80 50 97", "PY"), ("508 88 16 44", "PM")],
)
def test_a_national_number_that_also_reads_as_a_foreign_one(national: str, foreign_region: str) -> None:
    digits = re.sub(r"\D", "", national)
    # Read with a "+", these digits are a valid number of another country; read nationally, a Georgian mobile.
    assert _valid("+" + digits)
    assert _region("+" + digits) == foreign_region
    assert _valid("+995" + digits)
    assert _region("+995" + digits) == "GE"
    assert normalise(national, GE, default_region="GE") == "995" + digits
    assert normalise_many([national], GE) == (["995" + digits], [])
    # Written internationally it is the foreign number, which is refused, not reinterpreted.
    with pytest.raises(ValueError, match=f"country {foreign_region} is not allowed"):
        normalise("+" + digits, GE, default_region="GE")
    # And when that country is allowed as well, there is no national reading: the number is the foreign one.
    both = GE | {foreign_region}
    assert normalise_many([national], both) == ([digits], [])


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " ",
        "+",
        "00",
        "abc",
        "12",
        "+995 511 19 42 4x",
        "++995511194242",
        "+995 511 19 42 42 ext. 5",
        "995511194242;995555123456",
        "995,511,19,42,42",
    ],
)
def test_not_phone_numbers(raw: str) -> None:
    with pytest.raises(ValueError, match="phone number"):
        normalise(raw, GE, default_region="GE")


@pytest.mark.parametrize(
    "raw",
    [
        "+995 000 00 00 00",  # no Georgian range starts with 0
        "+995 511 19 42 4",  # one digit short
        "+995 511 19 42 421",  # one digit long
        "+995 51",
        "000 00 00 00",
        "+000 511 19 42 42",  # no country code 0
        "+999 511 19 42 42",  # country code 999 is unassigned
        "99999999999999999999",
    ],
)
def test_invalid_numbers(raw: str) -> None:
    with contextlib.suppress(phonenumbers.NumberParseException):  # unparseable is invalid all the more
        assert not phonenumbers.is_valid_number(phonenumbers.parse(raw, "GE"))
    with pytest.raises(ValueError, match="not a valid phone number"):
        normalise(raw, GE, default_region="GE")


@pytest.mark.parametrize("raw", [f"+{US}", f"00{US}", US, f"+1 ({US[1:4]}) {US[4:7]}-{US[7:]}"])
def test_a_valid_number_of_a_country_that_is_not_allowed(raw: str) -> None:
    with pytest.raises(ValueError, match=r"country US is not allowed \(allowed: GE\)"):
        normalise(raw, GE, default_region="GE")
    assert normalise(raw, GE_US) == US
    assert normalise_many([raw, "+995 511 19 42 42"], GE_US) == ([US, NUMBER], [])


def test_a_leading_zero_of_the_national_number_is_kept() -> None:
    # Italian fixed lines keep their 0 after the country code: +39 06 1234 5678 is 390612345678.
    assert _valid("+390612345678")
    assert normalise("+39 06 1234 5678", frozenset({"IT"})) == "390612345678"


def test_duplicates_in_any_format_are_sent_once_in_first_seen_order() -> None:
    raws = [
        "+995 555 12 34 56",
        "+995 (511) 19-42-42",
        "00995511194242",
        "995-555-12-34-56",
        "511 19 42 42",
        "(995) 511 194 242",
        "555123456",
    ]
    assert normalise_many(raws, GE) == ([OTHER, NUMBER], [])


def test_every_bad_number_is_reported_with_its_index() -> None:
    raws = ["+995 511 19 42 42", "hello", "+995 555 12 34 56", f"+{US}", "+995 000", "hello", "511194242"]
    numbers, errors = normalise_many(raws, GE)
    assert numbers == [NUMBER, OTHER]
    assert [(e.index, e.raw) for e in errors] == [
        (1, "hello"),
        (3, f"+{US}"),
        (4, "+995 000"),
        (5, "hello"),
    ]
    assert all(isinstance(e, NumberError) and e.message for e in errors)
    assert re.search(r"\bUS\b.*not allowed", errors[1].message)


def test_normalise_many_takes_any_iterable() -> None:
    assert normalise_many((raw for raw in ["+995511194242", "x"]), GE) == (
        [NUMBER],
        [NumberError(1, "x", "not a phone number")],
    )
    assert normalise_many([], GE) == ([], [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("995511194242", "995511***242"),
        ("+995511194242", "+995511***242"),
        ("to=995511194242,995555123456", "to=995511***242,995555***456"),
        ("number 995511194242 failed", "number 995511***242 failed"),
        (US, f"{US[:6]}***{US[-3:]}"),
        ("395071234567890", "395071***890"),  # 15 digits, the E.164 maximum
        ("code 4821, smsID 123456, msg_42", "code 4821, smsID 123456, msg_42"),
        ("995511***242", "995511***242"),
        ("", ""),
    ],
)
def test_mask(text: str, expected: str) -> None:
    assert mask(text) == expected


@pytest.mark.parametrize("length", range(11, 16))
def test_mask_hides_the_middle_of_any_international_number(length: int) -> None:
    digits = "".join(str(i % 10) for i in range(1, length + 1))
    masked = mask(f"sent to {digits}.")
    assert digits not in masked
    assert masked == f"sent to {digits[:6]}***{digits[-3:]}."
