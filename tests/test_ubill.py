"""uBill's module: callback parsing (what the gateway accepts from uBill)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smsgw.ubill import parse_callback

VALID = {
    "key": "k",
    "smsID": "117345",
    "number": "995511194242",
    "statusID": "1",
    "date": "2026-02-01 12:02:02",
}


def test_callback_date_is_tbilisi_time() -> None:
    callback = parse_callback(VALID)
    assert callback.occurred_at == datetime(2026, 2, 1, 8, 2, 2, tzinfo=UTC)  # UTC+4
    assert (callback.sms_id, callback.number, callback.status_id) == ("117345", "995511194242", 1)


def test_callback_number_with_a_plus_is_read_as_international() -> None:
    assert parse_callback({**VALID, "number": "+995511194242"}).number == "995511194242"


@pytest.mark.parametrize("date", ["0001-01-01 00:00:00", "2026-02-01T12:02:02", "2026-02-30 10:00:00"])
def test_callback_date_out_of_range_or_format_is_refused(date: str) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_callback({**VALID, "date": date})
