"""A closed-loop (or rate-paced) HTTP load generator in one process, for machines without ``wrk``.

``python -m ops.bench.pyload --url URL --spec SPEC.json --connections 64 --duration 10`` keeps ``connections``
requests in flight for ``duration`` seconds, each built as ``ops.bench.loadgen.LoadSpec`` says (the same
shapes as the wrk script), and prints one ``BENCHJSON {...}`` line with the same fields as the wrk script
(requests, duration, unexpected answers, socket errors, p50/p90/p99 latency).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp

from ops.bench.loadgen import LoadSpec

__all__ = ["main"]


def _pairs(spec: LoadSpec) -> list[tuple[str, str]]:
    if not spec.pairs_file:
        return []
    out = []
    for line in Path(spec.pairs_file).read_text().splitlines():
        sms, _, number = line.partition(",")
        if number:
            out.append((sms, number))
    return out


async def _run(url: str, spec: LoadSpec, connections: int, duration: float) -> dict[str, int]:
    latencies: list[float] = []
    counts = {"requests": 0, "non_ok": 0, "socket_errors": 0}
    rng = random.Random()
    counter = itertools.count(1)
    pairs = _pairs(spec)
    pause = connections / spec.rate if spec.rate else 0.0
    connector = aiohttp.TCPConnector(limit=connections)
    started = time.perf_counter()
    deadline = started + duration

    def build(n: int) -> tuple[str, str, dict[str, str], str | None]:
        headers: dict[str, str] = {}
        if spec.idempotency:
            headers["Idempotency-Key"] = f"{spec.run_id}-{n}"
        if spec.kind == "callbacks":
            sms, number = pairs[(n - 1) % len(pairs)]
            status = 0 if n <= len(pairs) else 1
            query = (
                f"?key={quote(spec.callback_key)}&smsID={sms}&number={number}&statusID={status}"
                f"&date={quote(spec.date)}"
            )
            return "GET", url + query, headers, None
        number = f"995{rng.choice(spec.prefixes)}{rng.randrange(1_000_000):06d}"
        if spec.kind == "facade":
            query = f"?key={quote(spec.token)}&brandID=1&numbers={number}&text={quote(spec.text)}"
            return "GET", url + query, headers, None
        headers["Authorization"] = f"Bearer {spec.token}"
        headers["Content-Type"] = "application/json"
        return "POST", url, headers, json.dumps({"to": [number], "text": spec.text})

    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_connection() -> None:
            while time.perf_counter() < deadline:
                method, target, headers, body = build(next(counter))
                sent = time.perf_counter()
                try:
                    async with session.request(method, target, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, OSError, TimeoutError):
                    counts["socket_errors"] += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                counts["requests"] += 1
                if status != spec.ok_status:
                    counts["non_ok"] += 1
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6) if latencies else 0

    return {
        **counts,
        "duration_us": int(elapsed * 1e6),
        "p50_us": pct(0.5),
        "p90_us": pct(0.9),
        "p99_us": pct(0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--spec", required=True, type=Path)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    spec = LoadSpec.from_json(args.spec.read_text())
    result = asyncio.run(_run(args.url, spec, args.connections, args.duration))
    print("BENCHJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
