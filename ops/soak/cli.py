"""``python -m ops.soak --seed N --duration SECONDS [--short] [--topology single|sentinel] [--plant KIND]
[--keep]``: exit 0 when every must-be-0 figure is 0, 1 when one is not, 2 when the soak itself failed."""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback
from pathlib import Path

from ops.soak.config import PLANTS, Options
from ops.soak.run import run

__all__ = ["main", "parse"]

RESULTS = Path(__file__).resolve().parent / "results"


def _plants(raw: list[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(p.strip() for item in raw for p in item.split(",") if p.strip()))
    bad = [n for n in names if n not in PLANTS]
    if bad:
        raise SystemExit(f"--plant: unknown {', '.join(bad)}; choose from {', '.join(PLANTS)}")
    return names


def parse(argv: list[str] | None = None) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(prog="python -m ops.soak", description=__doc__)
    parser.add_argument(
        "--seed", type=int, required=True, help="the same seed gives the same workload and faults"
    )
    parser.add_argument("--duration", type=float, required=True, help="seconds of workload under faults")
    parser.add_argument("--short", action="store_true", help="compressed faults and smaller sends (CI)")
    parser.add_argument("--topology", choices=("single", "sentinel"), default="single")
    parser.add_argument(
        "--plant",
        action="append",
        default=[],
        help=f"tamper on purpose so the checker must fail: {', '.join(PLANTS)}",
    )
    parser.add_argument("--no-faults", action="store_true", help="the workload alone (no fault schedule)")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="logical sends per second (default 6 short, 8 long)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir (logs, Redis data) and the journal"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SMSGW_NAME=VALUE",
        help="a product setting for gateways and workers (repeatable), e.g. SMSGW_REDIS_WAIT_REPLICAS=1",
    )
    parser.add_argument(
        "--report", type=Path, default=RESULTS / "latest.json", help="where to write the JSON report"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0:
        parser.error("--duration must be positive")
    overrides = []
    for item in args.set:
        name, found, value = item.partition("=")
        if not found or not name.startswith("SMSGW_"):
            parser.error(f"--set: expected SMSGW_NAME=VALUE, got {item!r}")
        overrides.append((name, value))
    options = Options(
        seed=args.seed,
        duration=args.duration,
        short=args.short,
        topology=args.topology,
        plants=_plants(args.plant),
        keep=args.keep,
        faults=not args.no_faults,
        rate=args.rate,
        overrides=tuple(overrides),
    )
    return options, args.report


def main(argv: list[str] | None = None) -> None:
    options, report = parse(argv)
    try:
        outcome = asyncio.run(run(options, report))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        traceback.print_exc()
        print(f"soak: the run itself failed (seed {options.seed})", file=sys.stderr)
        sys.exit(2)
    print(outcome.text, flush=True)
    if report is not None:
        print(f"report: {report}")
    sys.exit(1 if outcome.verdict.failures else 0)
