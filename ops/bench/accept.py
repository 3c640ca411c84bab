"""Figure 1 — accept throughput, one recipient per request, 64 connections, one gateway process, in the plain
shape and in production shape, beside the least an aiohttp service can do (one ZADD), alternated.

Shapes, all against the same Redis (AOF ``appendfsync always``) with the same load generator:

- ``baseline``: ``ops.bench.baseline_app`` (read the JSON body, one ZADD, answer 202);
- ``plain``: ``POST /v1/messages`` from a client without a rate, no ``Idempotency-Key``;
- ``production``: the same from a client with a ``rate`` (1,000,000/s: never refused, the rate check still
  runs) and a fresh ``Idempotency-Key`` on every request, info-level logs: how deployed callers look;
- ``facade``: ``GET /v1/sms/send?key=…&brandID=1&numbers=…&text=…`` in production shape (rate, key);
- ``uvloop``: production shape, the same gateway under uvloop (``ops.bench.uvloop_run``): would it earn its
  place?
- ``old``: production shape on the gateway of an older checkout (``--old-root``), when given: what a change
  to the accept path earned, measured in the same rounds.

One gateway process serves ``plain``, ``production`` and ``facade`` (two clients configured); the uvloop
one is a second process; both and the baseline app stay up, idle while another is measured. A round runs
each shape once (baseline first), each process warmed up before its first run; the full run makes two
rounds (``--rounds`` for more: on a shared machine a round's ratio can move by 0.1) to show the spread, and
each ratio is taken against the baseline of the same round. With two or more
CPUs the server under test gets the first CPU, the load generator and Redis the last. Targets: production
and facade >= 0.6x the baseline (moonshot 0.8x), plain >= 0.6x, nothing but 202 (facade: 200).
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
from pathlib import Path
from typing import Any

from ops.bench.harness import PROD_TOKEN, TOKEN, Bench
from ops.bench.loadgen import LoadSpec, describe, pick_generator
from ops.bench.numbers import mobile_prefixes
from ops.bench.procs import Proc
from ops.bench.report import Row

__all__ = ["run"]

CONNECTIONS = 64
TARGET_RATIO, MOONSHOT_RATIO = 0.6, 0.8
SHAPES = ("baseline", "plain", "production", "facade", "uvloop")


def _spec(shape: str, prefixes: tuple[int, ...]) -> LoadSpec:
    if shape in ("baseline", "plain"):
        return LoadSpec("messages", token=TOKEN, prefixes=prefixes)
    if shape == "facade":
        return LoadSpec("facade", token=PROD_TOKEN, prefixes=prefixes, idempotency=True, text="bench facade")
    return LoadSpec("messages", token=PROD_TOKEN, prefixes=prefixes, idempotency=True)


async def _measure(
    bench: Bench, generator: str, proc: Proc, spec: LoadSpec, duration: float, warmup: float
) -> dict[str, Any]:
    await bench.flush()
    if warmup:
        await bench.load(
            generator,
            proc.url,
            spec,
            connections=CONNECTIONS,
            duration=warmup,
        )
        await asyncio.sleep(0.3)
    cpu_before = proc.cpu_seconds()
    counters = await bench.redis_counters()
    redis_cpu = bench.cpu_times()["redis"]
    load = await bench.load(
        generator,
        proc.url,
        spec,
        connections=CONNECTIONS,
        duration=duration,
    )
    cpu = proc.cpu_seconds() - cpu_before
    return {
        **load.as_dict(),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_per_request_us": round(cpu / max(1, load.requests) * 1e6, 1),
        "redis_cpu_per_request_us": round(
            (bench.cpu_times()["redis"] - redis_cpu) / max(1, load.requests) * 1e6, 1
        ),
        "per_request": await bench.redis_cost(counters, load.requests),
    }


async def run(
    bench: Bench, generator: str, old_root: Path | None = None, rounds: int | None = None
) -> tuple[list[Row], dict[str, Any]]:
    generator = pick_generator(generator)
    duration = 2.0 if bench.quick else 5.0
    warmup = 1.0
    rounds = rounds or (1 if bench.quick else 2)
    shapes = SHAPES if importlib.util.find_spec("uvloop") else SHAPES[:-1]
    if old_root is not None:
        shapes = (*shapes, "old")
    prefixes = mobile_prefixes()
    await bench.reset()
    bench.pin_redis(bench.load_cpus)
    results: dict[str, list[dict[str, Any]]] = {shape: [] for shape in shapes}
    try:
        procs = {
            "baseline": await bench.start_baseline_app(cpus=bench.server_cpus),
            "gateway": await bench.start_gateway(cpus=bench.server_cpus),
        }
        if "uvloop" in shapes:
            procs["uvloop"] = await bench.start_gateway("gateway-uvloop", cpus=bench.server_cpus, uvloop=True)
        if old_root is not None:
            procs["old"] = await bench.start_gateway("gateway-old", cpus=bench.server_cpus, root=old_root)
        warmed: set[str] = set()
        for _ in range(rounds):
            for shape in shapes:
                proc = procs.get(shape, procs["gateway"])
                first = proc.name not in warmed  # one warm-up per process: connections open, scripts cached
                warmed.add(proc.name)
                results[shape].append(
                    await _measure(
                        bench, generator, proc, _spec(shape, prefixes), duration, warmup if first else 0.0
                    )
                )
    finally:
        for name in ("baseline-app", "gateway", "gateway-uvloop", "gateway-old"):
            bench.stop(name)
        bench.pin_redis(None)

    def rps(shape: str) -> list[float]:
        return [float(r["rps"]) for r in results[shape]]

    def ratios(shape: str, against: str = "baseline") -> list[float]:
        return [a / b if b else 0.0 for a, b in zip(rps(shape), rps(against), strict=True)]

    def mean(values: list[float]) -> float:
        return round(statistics.fmean(values), 1) if values else 0.0

    def spread(values: list[float]) -> str:
        return f" (rounds: {', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else ""

    base = mean(rps("baseline"))
    rows = []
    for shape, title in (
        ("plain", "Accept, plain shape (no rate, no Idempotency-Key), 64 conns"),
        ("production", "Accept, production shape (rate + Idempotency-Key), 64 conns"),
        ("facade", "Facade GET /v1/sms/send, production shape, 64 conns"),
    ):
        r = ratios(shape)
        target = f">= {TARGET_RATIO}x baseline" + (
            "" if shape == "plain" else f" (moonshot {MOONSHOT_RATIO}x)"
        )
        rows.append(
            Row(
                title + spread(r),
                mean(rps(shape)),
                "req/s",
                base,
                "aiohttp + 1 ZADD, same rounds",
                target,
                statistics.fmean(r) >= TARGET_RATIO,
                round(statistics.fmean(r), 3),
            )
        )
    # CPU per request: what each server would do on a core of its own, the figure least moved by other load.
    cpu = {
        shape: statistics.fmean(float(x["server_cpu_per_request_us"]) for x in results[shape])
        for shape in shapes
    }
    rows.append(
        Row(
            "Accept, production shape: gateway CPU per request",
            round(cpu["production"], 1),
            "us",
            round(cpu["baseline"], 1),
            "aiohttp + 1 ZADD",
            f">= {TARGET_RATIO}x (baseline / gateway)",
            cpu["baseline"] / cpu["production"] >= TARGET_RATIO,
            round(cpu["baseline"] / cpu["production"], 3),
        )
    )
    if "uvloop" in shapes:
        r = ratios("uvloop", "production")
        rows.append(
            Row(
                "Accept, production shape, gateway under uvloop: req/s" + spread(r),
                mean(rps("uvloop")),
                "req/s",
                mean(rps("production")),
                "the same gateway on asyncio's loop",
                "-",
                None,
                round(statistics.fmean(r), 3),
            )
        )
        rows.append(
            Row(
                "Accept, production shape, gateway under uvloop: CPU per request",
                round(cpu["uvloop"], 1),
                "us",
                round(cpu["production"], 1),
                "the same gateway on asyncio's loop",
                "-",
                None,
                round(cpu["production"] / cpu["uvloop"], 3),
            )
        )
    if old_root is not None:
        r = ratios("production", "old")
        rows.append(
            Row(
                f"Accept, production shape: this code vs {old_root.name} (--old-root){spread(r)}",
                mean(rps("production")),
                "req/s",
                mean(rps("old")),
                f"older checkout, same rounds ({statistics.fmean(ratios('old')):.2f}x the baseline)",
                "-",
                None,
                round(statistics.fmean(r), 3),
            )
        )
    bad = {
        shape: sum(int(x["non_ok"]) + int(x["socket_errors"]) for x in results[shape])
        for shape in shapes
        if shape != "baseline"
    }
    base_bad = sum(int(x["non_ok"]) + int(x["socket_errors"]) for x in results["baseline"])
    rows.append(
        Row(
            "Accept: answers other than 202/200 (+ socket errors), all shapes",
            sum(bad.values()),
            "",
            base_bad,
            "aiohttp + 1 ZADD",
            "0",
            not any(bad.values()),
        )
    )
    details = {
        "generator": describe(generator),
        "connections": CONNECTIONS,
        "duration_s": duration,
        "warmup_s": warmup,
        "rounds": rounds,
        "order": list(shapes),
        "server_cpus": sorted(bench.server_cpus or []),
        "load_and_redis_cpus": sorted(bench.load_cpus or []),
        "production_client": {"rate": "1e6/s (burst 1e6)", "idempotency_key": "fresh per request"},
        "ratios_per_round": {s: [round(v, 3) for v in ratios(s)] for s in shapes if s != "baseline"},
        "server_cpu_per_request_us": {s: round(v, 1) for s, v in cpu.items()},
        "non_ok_by_shape": bad,
        **results,
    }
    return rows, details
