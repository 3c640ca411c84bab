"""Planted faults prove the checker: each tampering makes exactly its own figure non-zero and the run fail.

One short run without the fault schedule carries every plant at once (they touch different figures), so the
same run also shows that a fault-free run of today's product leaves every other must-be-0 figure at 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.soak.config import PLANTS
from tests.soak.test_soak import Run, soak

pytestmark = [pytest.mark.soak, pytest.mark.timeout(180)]

FIGURE = {
    "duplicate": ("duplicated", "sent twice"),
    "lost": ("lost", "gone, never at uBill"),
    "false-delivered": ("false_delivered", "delivered, uBill never got it"),
    "extra-event": ("events_extra", "duplicate event"),
    "contract-500": ("contract", "planted HTTP 500"),
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Run:
    report: Path = tmp_path_factory.mktemp("plants") / "report.json"
    return soak(
        report, "--seed", "11", "--duration", "8", "--short", "--no-faults", "--plant", ",".join(PLANTS)
    )


def test_every_plant_has_its_figure() -> None:
    assert set(FIGURE) == set(PLANTS)


@pytest.mark.parametrize("plant", PLANTS)
def test_a_plant_makes_its_figure_fail(planted: Run, plant: str) -> None:
    figure, reason = FIGURE[plant]
    assert planted.report["failures"].get(figure) == 1, planted.output[-3000:]
    assert any(reason in r for r in planted.report["reasons"][figure]), planted.report["reasons"][figure]


def test_the_planted_run_fails_with_nothing_but_the_plants(planted: Run) -> None:
    assert planted.code == 1
    assert planted.report["failures"] == {figure: 1 for figure, _ in FIGURE.values()}
    assert "FAIL:" in planted.output
