"""Cost per single-recipient message, end to end: Redis commands, AOF bytes and round trips, in production
shape and (beside it, same run) in the plain shape.

One gateway and one worker (defaults), uBill (the sandbox) answering in 50 ms with callbacks on. Messages in
production shape arrive at a steady rate (``RATE``, below what one gateway and one worker carry, so every
stage keeps up and the takes batch as under normal load), each followed by its ``sent`` and ``delivered``
callbacks; the window closes when the last callback was answered (``ops.bench.e2e``). What Redis did in the
window ÷ messages (``ops.bench.redisstats`` says how each count is taken; ``SLOWLOG`` is on to split
top-level from inner commands and by script).

Baseline: the same run against an older checkout when ``--old-root`` is given (e.g. ``git worktree add
/tmp/old 9dc8de2``, the code issue 10 measured); otherwise issue 10's own figures (81 commands, 4.3 KB),
named as such. Targets: <= 40 commands and <= 2,500 B of AOF per message (moonshot 25 and 1,500 B).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ops.bench.e2e import end_to_end
from ops.bench.harness import Bench
from ops.bench.loadgen import pick_generator
from ops.bench.report import Row

__all__ = ["run"]

RATE = 500.0  # messages/s offered (wrk paces each connection)
CONNECTIONS = 8
LATENCY = 0.05
TARGET_COMMANDS, MOONSHOT_COMMANDS = 40, 25
TARGET_AOF, MOONSHOT_AOF = 2_500, 1_500
ISSUE_COMMANDS, ISSUE_AOF = 81.0, 4_300.0


async def _measure(bench: Bench, generator: str, root: Path | None, plain: bool = False) -> dict[str, Any]:
    return await end_to_end(
        bench,
        generator,
        gateways=1,
        workers=1,
        connections=CONNECTIONS,
        duration=2.0 if bench.quick else 6.0,
        rate=RATE,
        latency=LATENCY,
        slowlog=True,
        product_root=root,
        plain=plain,
    )


async def run(bench: Bench, generator: str, old_root: Path | None = None) -> tuple[list[Row], dict[str, Any]]:
    generator = pick_generator(generator)
    now = await _measure(bench, generator, None)
    plain = await _measure(bench, generator, None, plain=True)
    old = await _measure(bench, generator, old_root) if old_root else None
    cost = now["per_message"]
    if old is not None:
        base = old["per_message"]
        label = f"same run, older checkout ({old_root.name if old_root else ''})"
        b_commands, b_aof = base["commands_per_unit"], base["aof_bytes_per_unit"]
        b_top, b_reads = base.get("top_level_commands_per_unit"), base["redis_socket_reads_per_unit"]
    else:
        label = "issue 10 (code before the store rewrite; not this run)"
        b_commands, b_aof, b_top, b_reads = ISSUE_COMMANDS, ISSUE_AOF, None, None
    commands, aof = cost["commands_per_unit"], cost["aof_bytes_per_unit"]
    rows = [
        Row(
            "Redis commands per 1-recipient message, end to end",
            commands,
            "",
            b_commands,
            label,
            f"<= {TARGET_COMMANDS} (moonshot {MOONSHOT_COMMANDS})",
            commands <= TARGET_COMMANDS,
            round(commands / b_commands, 3) if b_commands else None,
        ),
        Row(
            "AOF bytes per 1-recipient message, end to end",
            aof,
            "B",
            b_aof,
            label,
            f"<= {TARGET_AOF:,} B (moonshot {MOONSHOT_AOF:,})",
            aof is not None and aof <= TARGET_AOF,
            round(aof / b_aof, 3) if aof and b_aof else None,
        ),
        Row(
            "Top-level Redis commands per message (>= round trips)",
            cost.get("top_level_commands_per_unit"),
            "",
            b_top,
            label,
        ),
        Row(
            "Redis socket reads per message (~ round trips)",
            cost["redis_socket_reads_per_unit"],
            "",
            b_reads,
            label,
        ),
        *_plain_rows(plain["per_message"], commands, aof),
    ]
    details = {
        "offered_rate": RATE,
        "uBill_latency_s": LATENCY,
        "product": now,
        "product_plain_shape": plain,
        "baseline": old
        if old is not None
        else {"issue_10": {"commands": ISSUE_COMMANDS, "aof_bytes": ISSUE_AOF}},
    }
    return rows, details


def _plain_rows(cost: dict[str, Any], commands: float, aof: float | None) -> list[Row]:
    """The plain shape (no client ``rate``, no ``Idempotency-Key``) beside production's, same run."""
    label = "production shape, same run"
    plain_commands, plain_aof = cost["commands_per_unit"], cost["aof_bytes_per_unit"]
    return [
        Row("Redis commands per message, plain shape", plain_commands, "", commands, label),
        Row("AOF bytes per message, plain shape", plain_aof, "B", aof, label),
    ]
