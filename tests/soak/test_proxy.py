"""The soak's network faults against a real redis-server: delay, cut, black hole, and the balancer."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ops.soak.proxy import Balancer, RedisProxy
from smsgw.devtools.redis import EmbeddedRedis, free_port
from tests.harness import serve

pytestmark = pytest.mark.soak


def through(proxy: RedisProxy, timeout: float = 2.0) -> Redis:
    return Redis(
        port=proxy.port, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout
    )


async def test_delay_holds_replies_and_pass_lets_them_through(own_redis: EmbeddedRedis) -> None:
    proxy = RedisProxy(own_redis.port)
    await proxy.start()
    try:
        async with through(proxy) as client:
            assert await client.ping()
            proxy.delay = 0.4
            started = time.monotonic()
            assert await client.set("k", "v")
            assert time.monotonic() - started >= 0.35
            proxy.heal()
            started = time.monotonic()
            assert await client.get("k") == "v"
            assert time.monotonic() - started < 0.3
    finally:
        await proxy.close()


async def test_cut_breaks_every_connection_and_refuses_until_healed(own_redis: EmbeddedRedis) -> None:
    proxy = RedisProxy(own_redis.port)
    await proxy.start()
    try:
        async with through(proxy) as client:
            await client.ping()
            proxy.refusing = True
            assert proxy.cut() >= 1
            with pytest.raises(RedisConnectionError):
                await client.ping()
            proxy.heal()
            assert await client.ping()
    finally:
        await proxy.close()


async def test_a_black_hole_says_nothing_then_delivers_late(own_redis: EmbeddedRedis) -> None:
    """Commands sent into a black hole run after the heal, as TCP would deliver them: a stale write."""
    proxy = RedisProxy(own_redis.port)
    await proxy.start()
    direct = Redis(port=own_redis.port, decode_responses=True)
    try:
        async with through(proxy, timeout=0.5) as client:
            await client.ping()
            proxy.blackhole()
            with pytest.raises(RedisTimeoutError):
                await client.set("late", "1")
            assert await direct.get("late") is None
            proxy.heal()
            for _ in range(50):
                if await direct.get("late") == "1":
                    break
                await asyncio.sleep(0.02)
            assert await direct.get("late") == "1"
    finally:
        await direct.aclose()
        await proxy.close()


async def test_the_balancer_skips_a_dead_gateway() -> None:
    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="up")

    app = web.Application()
    app.router.add_get("/", hello)
    runner, url = await serve(app)
    live = int(url.rsplit(":", 1)[1])
    balancer = Balancer(lambda: [free_port(), live])
    await balancer.start()
    try:
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", balancer.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert b"200 OK" in answer
            assert answer.endswith(b"up")
    finally:
        await balancer.close()
        await runner.cleanup()
