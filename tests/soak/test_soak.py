"""The chaos soak's short form (CI): a seeded run of real processes under every fault kind, then the verdict.

``python -m ops.soak --seed 1 --duration 45 --short`` as a subprocess, about a minute. The first test checks
the run itself (every fault injected and verified, the workload carried out); the second is the verdict:
every figure that must be 0 is 0. The long form is its own command (README, "Chaos soak").
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ops.soak.schedule import CALLBACKS, PROCESSES, REDIS_SINGLE, UBILL
from tests.harness import ROOT

pytestmark = [pytest.mark.soak, pytest.mark.timeout(300)]
SEED = 1
DURATION = 45


@dataclass(frozen=True)
class Run:
    code: int
    output: str
    report: dict[str, Any]
    seconds: float


def soak(report: Path, *args: str) -> Run:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ops.soak", *args, "--report", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode in (0, 1), f"the soak itself failed:\n{output[-4000:]}"
    return Run(done.returncode, output, json.loads(report.read_text()), time.monotonic() - started)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    report = tmp_path_factory.mktemp("soak") / "report.json"
    run = soak(report, "--seed", str(SEED), "--duration", str(DURATION), "--short")
    print(run.output)
    return run


def test_the_short_soak_injects_every_fault_and_carries_out_the_workload(short_run: Run) -> None:
    report = short_run.report
    injected = {f["kind"] for f in report["faults"]}
    assert injected == {*REDIS_SINGLE, *PROCESSES, *UBILL, *CALLBACKS}
    assert [f for f in report["faults"] if "error" in f["detail"]] == []
    probes = {f["detail"].get("probe") for f in report["faults"] if f["kind"].startswith("redis-")} - {None}
    assert probes == {"OutOfMemoryError", "ResponseError", "ReadOnlyError"}  # OOM, MISCONF, READONLY
    everything = report["rows"]["all"]
    assert everything["sends"] > 150
    assert everything["accepted"] > 500
    assert everything["sent_once"] > 0.8 * everything["accepted"]
    assert report["redis"]["used_memory"]["peak"] >= report["redis"]["used_memory"]["before"] > 0
    assert report["key_audit"]["keys"] > 0
    assert short_run.seconds < 150, f"the short soak took {short_run.seconds:.0f} s"


def test_every_promise_holds_under_the_faults(short_run: Run) -> None:
    """Lost, duplicated, false delivered, broken answers, wrong events: all 0 (see the table on failure)."""
    table = short_run.output[short_run.output.find("fault kind") :]
    assert short_run.report["failures"] == {}, f"seed {SEED}:\n{table[-6000:]}"
    assert short_run.code == 0
