"""The whole life of the data under a virtual clock (``ops.bench.lifetime``, short form): after every
retention has passed, Redis holds only structure, not history; and the verdict catches keys that would
outlive retention (planted during the load)."""

from __future__ import annotations

from ops.bench.lifetime import run, verdict
from ops.bench.virtualclock import INSTALL_HINT, find_libfaketime

PLANTED = 2


async def test_after_retention_only_the_planted_leak_is_left() -> None:
    assert find_libfaketime() is not None, f"libfaketime is needed: {INSTALL_HINT}"
    life = await run(seconds=6, rate=30, plant=PLANTED, settle=5.0)

    problems = verdict(life)

    assert life.peak.keys > life.before.keys + 300, "the load stored nothing to outlive"
    assert all(status.split()[1][0] == "2" for status in life.answers), life.answers
    leftovers = {s: n for s, n in life.after.by_shape.items() if s.startswith(("smsgw:msg:", "smsgw:idem:"))}
    assert leftovers == {
        "smsgw:msg:*": {"keys": PLANTED, "without_ttl": PLANTED},  # no TTL: never goes
        "smsgw:idem:*": {"keys": PLANTED, "without_ttl": 0},  # a TTL longer than any retention
    }, f"the product's own messages or records outlived retention: {leftovers}"
    assert len(problems) == 1 and "smsgw:msg:*" in problems[0] and "smsgw:idem:*" in problems[0], problems
    assert life.after.keys < 30, f"{life.after.keys} keys after retention"
