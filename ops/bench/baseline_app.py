"""The accept and callback baseline: the least an aiohttp service can do per request on the same Redis (one
ZADD).

``python -m ops.bench.baseline_app --port P --redis-url URL`` serves ``POST /v1/messages``: read the JSON
body, ZADD one member (the first number and a per-process counter) scored by the time, answer 202 with a
small JSON body; and ``GET /callbacks/ubill``: ZADD one member (smsID, number, statusID) scored by the time,
answer ``OK``. No auth, no validation, no durability script: what is left is aiohttp + redis-py + one round
trip.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

__all__ = ["CALLBACK_KEY", "QUEUE_KEY", "create_app"]

QUEUE_KEY = "bench:baseline:queue"
CALLBACK_KEY = "bench:baseline:callbacks"
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)


def create_app(redis_url: str) -> web.Application:
    counter = itertools.count()

    async def accept(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        to = body["to"]
        number = to[0] if isinstance(to, list) else to
        member = f"{number}:{next(counter)}"
        await request.app[REDIS].zadd(QUEUE_KEY, {member: time.time()})
        return web.json_response({"id": member, "status": "queued"}, status=202)

    async def callback(request: web.Request) -> web.Response:
        query = request.query
        member = f"{query.get('smsID')}:{query.get('number')}:{query.get('statusID')}"
        await request.app[REDIS].zadd(CALLBACK_KEY, {member: time.time()})
        return web.Response(text="OK")

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def resources(app: web.Application) -> AsyncIterator[None]:
        app[REDIS] = Redis.from_url(redis_url, decode_responses=True)
        yield
        await app[REDIS].aclose()

    app = web.Application()
    app.router.add_post("/v1/messages", accept)
    app.router.add_get("/callbacks/ubill", callback)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(resources)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    web.run_app(create_app(args.redis_url), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
