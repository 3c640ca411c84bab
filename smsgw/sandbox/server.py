"""Run the sandbox on a real socket until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from typing import Final

import structlog
from aiohttp import web

from smsgw.sandbox.app import create_app
from smsgw.sandbox.config import SandboxConfig

__all__ = ["serve"]

log = structlog.get_logger(__name__)
SHUTDOWN_TIMEOUT: Final = 5.0


async def serve(config: SandboxConfig) -> None:
    """Listen until a stop signal, then close gracefully (stalled calls are let go, tasks stopped)."""
    runner = web.AppRunner(
        create_app(config), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        _log_started(runner, config)
        await _until_signalled()
    finally:
        await runner.cleanup()
        log.info("sandbox stopped")


def _log_started(runner: web.AppRunner, config: SandboxConfig) -> None:
    host, port = runner.addresses[0][:2]  # the real port when 0 asked for any free one
    log.info(
        "sandbox listening",
        url=f"http://{host}:{port}/v1",
        host=host,
        port=port,
        brands=sorted(config.brands),
        balance=config.balance,
        callbacks=config.callback_url is not None,
    )


async def _until_signalled() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
