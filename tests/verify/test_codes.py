"""Codes: CSPRNG digits of the asked length, uniform, compared in constant time; ids unguessable."""

from __future__ import annotations

from collections import Counter

import pytest

from smsgw.verify.codes import codes_match, new_code, new_verification_id


@pytest.mark.parametrize("length", range(4, 11))
def test_codes_are_digits_of_the_asked_length(length: int) -> None:
    codes = [new_code(length) for _ in range(200)]
    assert all(len(c) == length and c.isdigit() for c in codes)
    assert len(set(codes)) > 150  # not one value repeated


@pytest.mark.parametrize("length", [3, 11, 0])
def test_lengths_outside_4_to_10_are_refused(length: int) -> None:
    with pytest.raises(ValueError, match="4 to 10"):
        new_code(length)


def test_every_digit_is_equally_likely_in_every_position() -> None:
    """Chi-square over 60,000 digits (6 positions x 10,000 codes): p < 1e-6 would mean a bias."""
    counts = Counter((i, d) for _ in range(10_000) for i, d in enumerate(new_code(6)))
    expected = 1_000
    chi2 = sum((counts[(i, str(d))] - expected) ** 2 / expected for i in range(6) for d in range(10))
    assert chi2 < 120  # 54 degrees of freedom: the 1e-6 quantile is about 113


def test_leading_zeros_are_kept() -> None:
    assert any(new_code(4).startswith("0") for _ in range(2_000))


def test_compare() -> None:
    assert codes_match("012345", "012345")
    assert not codes_match("012346", "012345")
    assert not codes_match("12345", "012345")
    assert not codes_match("", "012345")


def test_ids_are_unique_and_random() -> None:
    ids = {new_verification_id() for _ in range(1_000)}
    assert len(ids) == 1_000
    assert all(i.startswith("ver_") and len(i) == 4 + 11 + 16 for i in ids)
