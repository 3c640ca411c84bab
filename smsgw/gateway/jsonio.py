"""Reading JSON bodies and writing JSON answers the same way in every handler (orjson: the hot path)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from smsgw.errors import BadRequest, PayloadTooLarge, UnsupportedMedia
from smsgw.settings import MAX_BODY_BYTES

__all__ = ["json_response", "loads", "read_json"]


def loads(raw: bytes) -> Any:
    """Strict JSON: ``ValueError`` also for unpaired surrogates (no UTF-8 text, so no Redis value, holds one),
    integers beyond 64 bits read as floats, and nesting deeper than 1,024 levels."""
    return orjson.loads(raw)


async def read_json(request: web.Request) -> Any:
    """The body as JSON: 415 when it is not declared JSON, 413 when too large, 400 when malformed."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge("the request body is larger than 1 MiB")
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise UnsupportedMedia("send a JSON body with 'Content-Type: application/json'")
    raw = await request.read()
    try:
        return loads(raw)
    except ValueError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
