"""The dispatch baseline: a bare aiohttp client making the worker's uBill call, no Redis, no bookkeeping.

``python -m ops.bench.ubill_client --url SANDBOX/v1 --key K --concurrency 32 --duration 3 --prefixes 500,...``
keeps ``concurrency`` send calls in flight (one number each, the same GET as ``smsgw.ubill``) for ``duration``
seconds and prints ``BENCHJSON {"calls": n, "duration_us": d}``: what a worker process could do if the
HTTP call were all its work, against the same sandbox on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import aiohttp

__all__ = ["main"]


async def _run(url: str, key: str, concurrency: int, duration: float, prefixes: list[int]) -> dict[str, int]:
    rng = random.Random()
    calls = 0
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    started = time.perf_counter()
    deadline = started + duration
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal calls, errors
            while time.perf_counter() < deadline:
                number = f"995{rng.choice(prefixes)}{rng.randrange(1_000_000):06d}"
                params = {"key": key, "brandID": "1", "numbers": number, "text": "Bench dispatch baseline"}
                try:
                    async with session.get(url + "/sms/send", params=params) as response:
                        body = await response.json(content_type=None)
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                    errors += 1
                    continue
                if body.get("statusID") == 0:
                    calls += 1
                else:
                    errors += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return {"calls": calls, "errors": errors, "duration_us": int((time.perf_counter() - started) * 1e6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--prefixes", required=True)
    args = parser.parse_args()
    prefixes = [int(p) for p in args.prefixes.split(",")]
    result = asyncio.run(_run(args.url, args.key, args.concurrency, args.duration, prefixes))
    print("BENCHJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
