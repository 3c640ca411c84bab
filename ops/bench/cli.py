"""``python -m ops.bench [--quick] [--only accept,cost,...]``: a table and a JSON file (see README.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ops.bench import (
    accept,
    bigmessage,
    callbacks,
    ceiling,
    cost,
    dispatch,
    memory,
    otp,
    scaleout,
    slots,
)
from ops.bench.harness import Bench
from ops.bench.report import Row, table, write_results
from ops.bench.system import cpu_busy_percent, describe_machine, describe_redis, fsync_probe

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
FIGURES = (
    "accept",
    "latency",
    "otp",
    "dispatch",
    "slots",
    "callbacks",
    "scale",
    "memory",
    "cost",
    "ceiling",
)
BUSY_PERCENT = 25.0
Figure = Callable[[Bench], Awaitable[tuple[list[Row], dict[str, Any]]]]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs and smaller volumes (~85 s)")
    parser.add_argument(
        "--only",
        default=",".join(FIGURES),
        help=f"comma-separated subset of {', '.join(FIGURES)} (default: all)",
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server under test and the load generator to separate CPUs",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for <UTC stamp>.json and latest.json"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (process logs, Redis AOF)")
    parser.add_argument(
        "--appendfsync",
        choices=("always", "everysec", "no"),
        default="always",
        help="diagnostic only: Redis fsync policy (the contract's durable setting is always)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SMSGW_NAME=VALUE",
        help="diagnostic only: a product setting other than the default (repeatable)",
    )
    parser.add_argument(
        "--old-root",
        type=Path,
        default=None,
        metavar="PATH",
        help="an older checkout (git worktree add PATH COMMIT): the cost and accept figures measure it too, "
        "as their baseline",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        metavar="N",
        help="rounds of the accept figure (default 2, --quick 1): more for a tighter spread",
    )
    parser.add_argument(
        "--product-root",
        type=Path,
        default=None,
        metavar="PATH",
        help="diagnostic: run the gateway and worker of another checkout for every figure",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait up to this long for other load to go before starting (default 60)",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(FIGURES))
    if unknown or not chosen:
        parser.error(
            f"--only: unknown figure(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(FIGURES)}"
        )
    args.figures = [name for name in FIGURES if name in chosen]
    args.overrides = {}
    for item in args.set:
        name, found, value = item.partition("=")
        if not found or not name.startswith("SMSGW_"):
            parser.error(f"--set: expected SMSGW_NAME=VALUE, got {item!r}")
        args.overrides[name] = value
    return args


def _wait_idle(limit: float) -> dict[str, Any]:
    """Wait (up to ``limit`` s) until under BUSY_PERCENT of the machine is busy; report what was seen."""
    deadline = time.monotonic() + limit
    busy = cpu_busy_percent()
    while busy > BUSY_PERCENT and time.monotonic() < deadline:
        print(
            f"bench: machine {busy:.0f}% busy (load {os.getloadavg()[0]:.2f}); waiting for it to settle",
            file=sys.stderr,
        )
        time.sleep(4.0)
        busy = cpu_busy_percent()
    if busy > BUSY_PERCENT:
        print(f"bench: WARNING: machine still {busy:.0f}% busy; figures will be low", file=sys.stderr)
    return {
        "cpu_busy_percent": busy,
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "idle": busy <= BUSY_PERCENT,
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Figure] = {
        "accept": lambda bench: accept.run(bench, args.loadgen, args.old_root, args.rounds),
        "latency": bigmessage.run,
        "otp": otp.run,
        "dispatch": dispatch.run,
        "memory": memory.run,
        "ceiling": lambda bench: ceiling.run(bench, args.loadgen),
        "scale": scaleout.run,
        "callbacks": lambda bench: callbacks.run(bench, args.loadgen),
        "slots": lambda bench: slots.run(bench, args.loadgen),
        "cost": lambda bench: cost.run(bench, args.loadgen, args.old_root),
    }
    rows: list[Row] = []
    out: dict[str, Any] = {}
    async with Bench(
        quick=args.quick,
        pin_cpus=not args.no_pin,
        keep=args.keep,
        overrides=args.overrides,
        appendfsync=args.appendfsync,
        product_root=args.product_root,
    ) as bench:
        out["redis"] = await describe_redis(bench.redis, bench.redis_server.binary)
        out["redis"]["data_dir_fdatasync_4k_ms"] = fsync_probe(bench.redis_server.data_dir)
        out["product_settings"] = bench.product_settings()
        out["sandbox"] = {
            "callbacks": "off (no callback_url)",
            "log_level": "warning",
            "latency_s": "0 unless a figure says otherwise",
        }
        out["figures"] = {}
        for name in args.figures:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            entry: dict[str, Any] = {}
            await bench.fsync_latency(reset=True)
            try:
                figure_rows, details = await figures[name](bench)
            except Exception as exc:  # one broken figure must not lose the others
                traceback.print_exc()
                entry["error"] = f"{type(exc).__name__}: {exc}"
                for proc in list(bench.procs):
                    if proc != "sandbox":
                        bench.stop(proc)
            else:
                rows += figure_rows
                entry["rows"] = [r.as_dict() for r in figure_rows]
                entry["details"] = details
            entry["seconds"] = round(time.monotonic() - started, 1)
            entry["redis_aof_fsync"] = await bench.fsync_latency()
            out["figures"][name] = entry
            print(f"bench: {name} done in {entry['seconds']} s", file=sys.stderr, flush=True)
        if args.keep:
            out["workdir"] = str(bench.workdir)
    out["slow_stops"] = bench.slow_stops
    out["rows"] = [r.as_dict() for r in rows]
    out["table"] = table(rows)
    return out


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    started = datetime.now(UTC)
    load_before = _wait_idle(args.wait_idle)
    clock = time.monotonic()
    results: dict[str, Any] = {
        "command": "python -m ops.bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "started_at": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "figures_run": args.figures,
        "machine": describe_machine(),
        "load_before": load_before,
    }
    results.update(asyncio.run(_run(args)))
    results["duration_s"] = round(time.monotonic() - clock, 1)
    results["load_after"] = {"loadavg": [round(v, 2) for v in os.getloadavg()]}
    path = write_results(results, args.out, started.strftime("%Y%m%dT%H%M%SZ"))
    print()
    print(results["table"])
    redis = results.get("redis", {})
    machine = results["machine"]
    fsync = redis.get("data_dir_fdatasync_4k_ms", {})
    print(
        f"\nRedis {redis.get('version')} appendonly={redis.get('appendonly')} "
        f"appendfsync={redis.get('appendfsync')} (disk fdatasync p50 {fsync.get('p50')} ms, "
        f"p99 {fsync.get('p99')} ms); "
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}); "
        f"Python {machine['python']}; load before {load_before['loadavg'][0]} "
        f"({load_before['cpu_busy_percent']}% busy); {results['duration_s']} s"
    )
    print(f"results: {path} (and {path.parent / 'latest.json'})")
    errors = {name: f["error"] for name, f in results.get("figures", {}).items() if "error" in f}
    if errors:
        for name, error in errors.items():
            print(f"bench: {name} FAILED: {error}", file=sys.stderr)
        raise SystemExit(1)
