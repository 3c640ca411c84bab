"""``smsgw sandbox``: a faithful local stand-in for uBill's SMS API with fault knobs (shared/ubill-api.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from smsgw.sandbox.app import create_app
from smsgw.sandbox.config import SandboxConfig
from smsgw.sandbox.server import serve

__all__ = ["SandboxConfig", "create_app", "main"]


def main(environ: Mapping[str, str]) -> None:
    """Read ``SMSGW_SANDBOX_*`` and serve until SIGINT/SIGTERM; a bad variable raises ``SettingsError``."""
    config = SandboxConfig.from_env(environ)
    unknown = SandboxConfig.unknown_names(environ)
    if unknown:
        structlog.get_logger(__name__).warning("unknown sandbox variables ignored", names=unknown)
    asyncio.run(serve(config))
