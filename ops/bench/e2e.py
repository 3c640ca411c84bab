"""End to end under sustained load, shared by the cost and the one-Redis figures.

Gateways and workers run as a deployment runs them; the sandbox plays uBill with callbacks on, pointed at
the first gateway's ``/callbacks/ubill`` (``sent`` 0.2 s after the call, ``delivered`` 5 ms later, the
sandbox's defaults). One load generator per gateway sends single-recipient messages in production shape
(client with a rate, a fresh ``Idempotency-Key`` per request). The window opens before the load starts and
closes once every accepted message's two callbacks were answered (the gateways' own counters: no Redis read
by the bench inside the window), so it holds every command a message costs: accept, take, the uBill call's
settle, both callbacks and their events, plus the processes' periodic duties over that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ops.bench.harness import BENCH_CLIENT_NAME, CALLBACK_KEY, PROD_TOKEN, TOKEN, Bench
from ops.bench.loadgen import LoadSpec
from ops.bench.numbers import mobile_prefixes
from ops.bench.procs import Proc, wait_http
from ops.bench.redisstats import RedisWindow

__all__ = ["end_to_end", "metric_sum"]

PROD_CLIENT_STREAM = "smsgw:stream:bench-prod"
PLAIN_CLIENT_STREAM = "smsgw:stream:bench"


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus text exposition's samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        series = head.split("{", 1)
        if series[0] != name or not all(w in head for w in wanted):
            continue
        total += float(value)
    return total


async def metrics_text(bench: Bench, proc: Proc) -> str:
    async with bench.http.get(proc.url + "/metrics") as response:
        return await response.text()


async def _counts(bench: Bench, gateways: list[Proc]) -> dict[str, float]:
    texts = await asyncio.gather(*(metrics_text(bench, g) for g in gateways))
    out: dict[str, float] = {"accepted": 0.0, "callbacks": 0.0}
    for text in texts:
        out["accepted"] += metric_sum(text, "smsgw_recipients_accepted_total")
        out["callbacks"] += metric_sum(text, "smsgw_callbacks_total")
        for outcome in ("applied", "duplicate", "orphaned", "adopted", "ignored"):
            out[outcome] = out.get(outcome, 0.0) + metric_sum(text, "smsgw_callbacks_total", outcome=outcome)
    return out


async def end_to_end(
    bench: Bench,
    generator: str,
    *,
    gateways: int,
    workers: int,
    connections: int,
    duration: float,
    rate: float | None,
    latency: float,
    slowlog: bool,
    worker_env: dict[str, str] | None = None,
    limit: float = 120.0,
    product_root: Path | None = None,
    plain: bool = False,
) -> dict[str, Any]:
    """Run the load, wait for every callback, and return what it cost (see ``RedisWindow``).
    ``product_root``: run the gateways and workers of another checkout (an older commit) instead.
    ``plain``: a client with no ``rate`` sending no ``Idempotency-Key`` (production shape otherwise)."""
    token, stream = (TOKEN, PLAIN_CLIENT_STREAM) if plain else (PROD_TOKEN, PROD_CLIENT_STREAM)
    with _product_root(bench, product_root):
        await bench.reset()
        gws = [await bench.start_gateway(f"e2e-gateway-{i}") for i in range(gateways)]
        await bench.sandbox_patch(
            latency=latency, callback_url=gws[0].url + "/callbacks/ubill", callback_key=CALLBACK_KEY
        )
        names = [f"e2e-worker-{i}" for i in range(workers)]
        for name in names:
            await bench.start_worker(name, env=worker_env, wait=False)
        for name in names:
            await wait_http(bench.procs[name], "/readyz")
        procs = gws + [bench.procs[name] for name in names]
        try:
            # Warm-up: connections open, scripts cached, one message through every stage.
            prefixes = mobile_prefixes()
            warm = LoadSpec("messages", token=PROD_TOKEN, prefixes=prefixes, idempotency=True, rate=50.0)
            await asyncio.gather(
                *(bench.load(generator, g.url, warm, connections=2, duration=1.0, pinned=False) for g in gws)
            )
            await _wait_callbacks(bench, gws, limit=30.0)
            before = await _counts(bench, gws)
            events_before = int(await bench.redis.xlen(stream))
            window = RedisWindow(
                bench.redis, bench.redis_pid, bench.redis_server.data_dir, BENCH_CLIENT_NAME, slowlog=slowlog
            )
            await window.start()
            cpu_before = {p.name: p.cpu_seconds() for p in procs} | {
                "sandbox": bench.procs["sandbox"].cpu_seconds()
            }
            started = time.monotonic()
            spec = LoadSpec(
                "messages",
                token=token,
                prefixes=prefixes,
                idempotency=not plain,
                text="Bench end to end: your code is 482913",
                rate=rate / gateways if rate else None,
            )
            loads = await asyncio.gather(
                *(
                    bench.load(
                        generator, g.url, spec, connections=connections, duration=duration, pinned=False
                    )
                    for g in gws
                )
            )
            loaded = time.monotonic()
            after = await _wait_callbacks(bench, gws, limit=limit, before=before)
            done = time.monotonic()
            accepted = int(after["accepted"] - before["accepted"])
            cost = await window.stop(accepted)
            elapsed = done - started
            cpu = {p.name: p.cpu_seconds() for p in procs} | {"sandbox": bench.procs["sandbox"].cpu_seconds()}
            events = int(await bench.redis.xlen(stream)) - events_before
        finally:
            bench.stop_many([p.name for p in procs])
            await bench.sandbox_patch(latency=0.0, callback_url=None)
        return {
            "gateways": gateways,
            "workers": workers,
            "uBill_latency_s": latency,
            "offered_rate": rate,
            "connections_per_gateway": connections,
            "load_seconds": round(loaded - started, 2),
            "messages": accepted,
            "seconds_to_last_callback": round(elapsed, 2),
            "messages_per_s": round(accepted / elapsed, 1) if elapsed else 0.0,
            "accept_rps": round(sum(load.requests for load in loads) / max(1e-9, loaded - started), 1),
            "accept_non_202": sum(load.non_ok + load.socket_errors for load in loads),
            "callbacks": {k: int(after[k] - before[k]) for k in after if k != "accepted"},
            "events_in_stream_per_message": round(events / max(1, accepted), 2),
            "cpu_percent_of_core": {
                name: round((cpu[name] - cpu_before[name]) / elapsed * 100, 1) for name in cpu
            }
            | {"redis": cost["redis_cpu_percent_of_core"]},
            "per_message": cost,
            "load": [load.as_dict() for load in loads],
        }


@contextlib.contextmanager
def _product_root(bench: Bench, root: Path | None) -> Iterator[None]:
    """Run the gateways and workers of ``root`` (another checkout) meanwhile, when given."""
    saved = bench.product_root
    bench.product_root = root or saved
    try:
        yield
    finally:
        bench.product_root = saved


async def _wait_callbacks(
    bench: Bench, gateways: list[Proc], *, limit: float, before: dict[str, float] | None = None
) -> dict[str, float]:
    """Until every accepted message's two callbacks were answered (the gateways' counters)."""
    base = before or {"accepted": 0.0, "callbacks": 0.0}
    deadline = time.monotonic() + limit
    while True:
        now = await _counts(bench, gateways)
        accepted = now["accepted"] - base["accepted"]
        if now["callbacks"] - base["callbacks"] >= 2 * accepted and accepted > 0:
            return now
        if time.monotonic() > deadline:
            got = now["callbacks"] - base["callbacks"]
            raise RuntimeError(f"only {got:.0f} of {2 * accepted:.0f} callbacks arrived within {limit:g}s")
        await asyncio.sleep(0.1)
