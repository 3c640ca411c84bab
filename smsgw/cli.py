"""``smsgw``: one console script, four commands (gateway, worker, sandbox, dev) and a token helper."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence

import structlog

from smsgw import logs
from smsgw.errors import SettingsError
from smsgw.settings import Settings, token_sha256, unknown_names

__all__ = ["main"]


def _settings(environ: Mapping[str, str], process: str, *required: str) -> Settings:
    settings = Settings.from_env(environ)
    settings.require(*required)
    logs.configure(
        settings.log_format,
        settings.log_level,
        process=process,
        secrets=[
            settings.ubill_api_key.reveal(),
            settings.callback_key.reveal(),
            settings.redis_password.reveal(),
            settings.redis_sentinel_password.reveal(),
            *settings.verify.secret_values,
        ],
    )
    for name in unknown_names(environ):
        structlog.get_logger("smsgw").warning("settings.unknown_variable", name=name)
    return settings


def _gateway(environ: Mapping[str, str]) -> None:
    from aiohttp import web  # noqa: PLC0415 - keep `smsgw --help` fast

    from smsgw.gateway.app import create_app  # noqa: PLC0415

    settings = _settings(environ, "gateway", "SMSGW_REDIS_URL", "SMSGW_CALLBACK_KEY", "SMSGW_CLIENTS")
    web.run_app(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=None,
        shutdown_timeout=10,
    )


def _worker(environ: Mapping[str, str]) -> None:
    from smsgw.worker.main import run  # noqa: PLC0415

    settings = _settings(environ, "worker", "SMSGW_REDIS_URL", "SMSGW_UBILL_API_KEY")
    asyncio.run(run(settings))


def _sandbox(environ: Mapping[str, str]) -> None:
    from smsgw import sandbox  # noqa: PLC0415

    settings = Settings.from_env(
        {k: v for k, v in environ.items() if k in ("SMSGW_LOG_FORMAT", "SMSGW_LOG_LEVEL")}
    )
    logs.configure(
        settings.log_format,
        settings.log_level,
        process="sandbox",
        secrets=[environ.get("SMSGW_SANDBOX_API_KEY", ""), environ.get("SMSGW_SANDBOX_CALLBACK_KEY", "")],
    )
    sandbox.main(environ)


def _dev(environ: Mapping[str, str]) -> None:
    from smsgw.devtools import run as dev  # noqa: PLC0415

    dev.main(environ)


COMMANDS = {
    "gateway": (_gateway, "run the HTTP API (internal API, uBill callback, facade, health, metrics)"),
    "worker": (_worker, "run the lane workers that dispatch to uBill (health and metrics on their own port)"),
    "sandbox": (_sandbox, "run a local uBill simulator (send, report, balance, callbacks, fault knobs)"),
    "dev": (_dev, "run everything locally: embedded Redis, sandbox, gateway and worker"),
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="smsgw",
        description="sms-gateway: internal SMS gateway in front of uBill. "
        "Configuration comes from SMSGW_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    token = sub.add_parser("token-hash", help="print the token_sha256 of a client token for SMSGW_CLIENTS")
    token.add_argument("token")
    args = parser.parse_args(argv)
    if args.command == "token-hash":
        print(token_sha256(args.token))
        return
    try:
        COMMANDS[args.command][0](os.environ)
    except SettingsError as exc:
        print(f"smsgw {args.command}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass
