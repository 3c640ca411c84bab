"""One soak run, start to verdict: start the stage, run the workload and the faults side by side, heal, let
the system settle, collect, check, report, and stop everything (also on error or Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.soak import plants
from ops.soak.checker import check
from ops.soak.collect import collect, settle
from ops.soak.config import Options
from ops.soak.injector import Injector
from ops.soak.logscan import scan_logs
from ops.soak.observe import Sampler
from ops.soak.records import Journal
from ops.soak.report import redis_figures, render, write_json
from ops.soak.schedule import build_schedule, describe
from ops.soak.stage import Stage
from ops.soak.verdict import Verdict
from ops.soak.workload import Workload, build_plan

__all__ = ["Outcome", "run"]


@dataclass
class Outcome:
    verdict: Verdict
    text: str
    report: dict[str, Any]


def _say(text: str) -> None:
    print(text, flush=True)


async def _watchdog(stage: Stage, injector: Injector, journal: Journal) -> None:
    """A product process that exits without being killed by a fault is a finding: note it and restart it."""
    while True:
        await asyncio.sleep(1.0)
        for group, start in ((stage.workers, stage.start_worker), (stage.gateways, stage.start_gateway)):
            for index, slot in enumerate(group):
                if slot.process is None or slot.alive() or slot.name in injector.busy:
                    continue
                code = slot.process.returncode
                journal.notes.append(
                    f"{slot.name} exited by itself (code {code}) at {time.time():.1f}: restarted"
                )
                start(index)


async def run(options: Options, report_path: Path | None) -> Outcome:
    work_dir = Path(tempfile.mkdtemp(prefix=f"smsgw-soak-{options.seed}-"))
    schedule = (
        build_schedule(options.seed, options.duration, options.topology, options.short)
        if options.faults
        else []
    )
    plan = build_plan(options)
    kinds = Counter(p.kind for p in plan)
    _say(
        f"soak: seed {options.seed}, {options.duration:.0f} s of workload, topology {options.topology}, "
        f"work dir {work_dir}\nplan: {len(plan)} items "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    )
    _say(f"fault schedule ({len(schedule)} faults):\n{describe(schedule) or '  (none)'}")
    if options.overrides:
        _say("settings: " + " ".join(f"{name}={value}" for name, value in options.overrides))
    if options.plants:
        _say(f"planted: {', '.join(options.plants)}")
    stage = Stage(options, work_dir)
    journal = Journal(options.seed)
    sampler = Sampler(stage.topology, journal)
    try:
        started = time.monotonic()
        await stage.start()
        _say(f"stage up in {time.monotonic() - started:.1f} s (gateways behind {stage.balancer.url})")
        sampler.start()
        await asyncio.sleep(1.0)
        workload = Workload(plan, stage.balancer.url, journal)
        injector = Injector(stage, workload, journal, schedule)
        await plants.at_start(options.plants, stage, journal)
        watchdog = asyncio.create_task(_watchdog(stage, injector, journal))
        origin = time.monotonic()
        await asyncio.gather(workload.run(origin), injector.run(origin))
        await injector.heal_all()
        watchdog.cancel()
        _say(f"workload and faults done in {time.monotonic() - origin:.1f} s; settling")
        waited = await settle(stage, journal, options.quiet_limit)
        _say(f"settled after {waited:.1f} s")
        await plants.after_settle(options.plants, stage, journal)
        collected = await collect(stage, journal)
        plants.tamper_collected(options.plants, journal, collected)
        await sampler.sample()
        await sampler.stop()
        verdict = check(journal, collected)
        redis = redis_figures(journal.samples, journal.workload_started)
        logs = scan_logs(stage.logs)
        text = render(journal, verdict, redis, collected.key_audit)
        if logs["errors"]:
            text += "\nproduct error log lines (process: event x count):\n" + "\n".join(
                f"  {name} x{count}" for name, count in logs["errors"].items()
            )
        report = {
            "options": {**options.__dict__, "plants": list(options.plants)},
            "schedule": [f.__dict__ for f in schedule],
            "redis": redis,
            "key_audit": collected.key_audit,
            "logs": logs,
            "settled_after_seconds": round(waited, 1),
            "collected": {
                "ubill_sends": len(collected.ubill_sends),
                "callbacks": len(collected.callbacks),
                "events": len(collected.events),
                "messages": len(collected.messages),
                "unreadable_messages": collected.unreadable,
                "facade_reports": len(collected.reports),
            },
            "work_dir": str(work_dir) if options.keep else None,
            "journal": journal.as_json() if options.keep else None,
        }
        if report_path is not None:
            write_json(report_path, journal, verdict, report)
        return Outcome(verdict, text, report)
    finally:
        await sampler.stop()
        with contextlib.suppress(Exception):
            await stage.stop()
        if options.keep:
            _say(f"kept: {work_dir} (process logs in logs/, Redis data in redis-*/)")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
