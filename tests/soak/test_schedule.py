"""The soak's seeded plan and fault schedule: reproducible, complete, and never two Redis faults at once."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from ops.soak.cli import parse
from ops.soak.config import JOB_LEASE, REDIS_TIMEOUT, Options
from ops.soak.schedule import CALLBACKS, PROCESSES, REDIS_SENTINEL, REDIS_SINGLE, UBILL, build_schedule
from ops.soak.workload import build_plan

pytestmark = pytest.mark.soak


@pytest.mark.parametrize(("topology", "redis"), [("single", REDIS_SINGLE), ("sentinel", REDIS_SENTINEL)])
@pytest.mark.parametrize("seed", [1, 2, 99])
def test_every_fault_kind_is_injected_even_in_a_short_run(
    topology: str, redis: tuple[str, ...], seed: int
) -> None:
    faults = build_schedule(seed, 40, topology, short=True)
    assert {f.kind for f in faults} == {*redis, *PROCESSES, *UBILL, *CALLBACKS}
    assert max(f.at + f.duration for f in faults) < 60


def test_the_same_seed_gives_the_same_schedule_and_plan() -> None:
    assert build_schedule(7, 300, "single", short=False) == build_schedule(7, 300, "single", short=False)
    assert build_schedule(7, 300, "single", short=False) != build_schedule(8, 300, "single", short=False)
    options = Options(seed=7, duration=20, short=True)
    assert build_plan(options) == build_plan(options)
    assert build_plan(options) != build_plan(Options(seed=8, duration=20, short=True))


def test_redis_faults_never_overlap_and_bite() -> None:
    faults = [f for f in build_schedule(3, 1800, "single", short=False) if f.kind in REDIS_SINGLE]
    for before, after in itertools.pairwise(faults):
        assert before.at + before.duration <= after.at
    assert all(f.duration > JOB_LEASE for f in faults if f.kind == "redis-stop")
    assert all(f.params["delay"] > REDIS_TIMEOUT for f in faults if f.kind == "proxy-delay")
    assert Counter(f.kind for f in faults)["redis-kill"] >= 5  # a long run cycles through the kinds again


def test_every_number_belongs_to_one_send() -> None:
    plan = build_plan(Options(seed=5, duration=60))
    numbers = [n for item in plan for n in item.numbers]
    assert len(numbers) == len(set(numbers)) > 100
    assert all(len(n) == 12 and n.startswith("9955") for n in numbers)
    assert {p.kind for p in plan} >= {
        "otp",
        "transactional",
        "bulk",
        "scheduled",
        "facade-get",
        "facade-post",
        "cancel",
    }
    assert {p.retry for p in plan if p.numbers} == {"keyed", "unkeyed", "once"}
    assert not any(p.retry == "keyed" for p in plan if p.kind.startswith("facade"))


def test_the_command_line() -> None:
    options, report = parse(
        ["--seed", "4", "--duration", "30", "--short", "--plant", "lost,duplicate", "--keep"]
    )
    assert (options.seed, options.duration, options.short, options.keep) == (4, 30.0, True, True)
    assert options.plants == ("lost", "duplicate")
    assert report is not None
    with pytest.raises(SystemExit):
        parse(["--seed", "4", "--duration", "30", "--plant", "nonsense"])
    with pytest.raises(SystemExit):
        parse(["--seed", "4", "--duration", "30", "--topology", "cluster"])
