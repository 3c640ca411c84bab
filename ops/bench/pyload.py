"""A closed-loop HTTP load generator in one process, for machines without ``wrk``.

``python -m ops.bench.pyload --url URL --token T --connections 64 --duration 10 --prefixes 500,501,...``
keeps ``connections`` requests in flight for ``duration`` seconds and prints one ``BENCHJSON {...}`` line with
the same fields as the wrk script (requests, duration, non-202 answers, socket errors, p50/p99 latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import aiohttp

__all__ = ["main"]


async def _run(
    url: str, token: str, connections: int, duration: float, prefixes: list[int]
) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    counts = {"requests": 0, "non_202": 0, "socket_errors": 0}
    rng = random.Random()
    connector = aiohttp.TCPConnector(limit=connections)
    started = time.perf_counter()
    deadline = started + duration
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_connection() -> None:
            while time.perf_counter() < deadline:
                number = f"995{rng.choice(prefixes)}{rng.randrange(1_000_000):06d}"
                body = json.dumps({"to": [number], "text": "bench accept"})
                sent = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, OSError, TimeoutError):
                    counts["socket_errors"] += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                counts["requests"] += 1
                if status != 202:
                    counts["non_202"] += 1

        await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6) if latencies else 0

    return {**counts, "duration_us": int(elapsed * 1e6), "p50_us": pct(0.5), "p99_us": pct(0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--prefixes", required=True)
    args = parser.parse_args()
    prefixes = [int(p) for p in args.prefixes.split(",")]
    result = asyncio.run(_run(args.url, args.token, args.connections, args.duration, prefixes))
    print("BENCHJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
