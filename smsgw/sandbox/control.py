"""``/_sandbox/*``: what the sandbox accepted and called back, and its knobs at run time.

No authentication: the sandbox is a development and test tool and must never face the internet.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import web

from smsgw.sandbox.runtime import SANDBOX, Sandbox

__all__ = ["routes"]

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


def _config_view(sandbox: Sandbox) -> dict[str, Any]:
    return {**sandbox.config.public(), "balance": sandbox.state.balance}


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


@routes.get("/_sandbox/sends")
async def list_sends(request: web.Request) -> web.Response:
    """Accepted calls, oldest first; ``?number=`` keeps the calls that included that number."""
    state = request.app[SANDBOX].state
    sends = state.sends(request.query.get("number") or None)
    return web.json_response({"sends": [s.as_json() for s in sends]})


@routes.delete("/_sandbox/sends")
async def clear_sends(request: web.Request) -> web.Response:
    """Forget sends, counts and callbacks, and drop callbacks not yet made, so a test starts clean."""
    sandbox = request.app[SANDBOX]
    sandbox.deliverer.clear()
    sandbox.state.clear()
    return web.Response(status=204)


@routes.get("/_sandbox/counts")
async def counts(request: web.Request) -> web.Response:
    state = request.app[SANDBOX].state
    return web.json_response({"calls": state.calls, "numbers": dict(state.counts)})


@routes.get("/_sandbox/callbacks")
async def callbacks(request: web.Request) -> web.Response:
    """Every callback attempt, oldest first; ``?number=`` and ``?sms_id=`` narrow the list."""
    number = request.query.get("number")
    sms_id = request.query.get("sms_id")
    entries = [
        c.as_json()
        for c in request.app[SANDBOX].state.callbacks
        if (not number or c.number == number) and (not sms_id or str(c.sms_id) == sms_id)
    ]
    return web.json_response({"callbacks": entries})


@routes.get("/_sandbox/config")
async def get_config(request: web.Request) -> web.Response:
    return web.json_response(_config_view(request.app[SANDBOX]))


@routes.patch("/_sandbox/config")
async def patch_config(request: web.Request) -> web.Response:
    """Change knobs at run time; a bad value changes nothing and answers 400 naming the field."""
    sandbox = request.app[SANDBOX]
    try:
        patch = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    if not isinstance(patch, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    try:
        sandbox.reconfigure(patch)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    log.info("sandbox config changed", fields=sorted(patch))
    return web.json_response(_config_view(sandbox))
