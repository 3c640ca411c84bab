"""Reading JSON bodies and writing JSON answers the same way in every handler."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from smsgw.errors import BadRequest, PayloadTooLarge, UnsupportedMedia
from smsgw.settings import MAX_BODY_BYTES

__all__ = ["json_response", "loads", "read_json"]

# A \uD800-\uDFFF escape: only escapes can put an unpaired surrogate past UTF-8 decoding.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def loads(raw: bytes) -> Any:
    """``json.loads``, also refusing (``ValueError``) unpaired surrogates such as ``"\\ud83d"``: JSON's
    syntax allows them (RFC 7493 does not), but no UTF-8 text holds one: Redis and our answers would fail."""
    try:
        value = json.loads(raw)
    except RecursionError:  # "[[[[…": a 1 MiB body can nest far deeper than the decoder recurses
        raise ValueError("nested too deeply") from None
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ValueError("a string holds an unpaired UTF-16 surrogate") from None
    return value


async def read_json(request: web.Request) -> Any:
    """The body as JSON: 415 when it is not declared JSON, 413 when too large, 400 when malformed."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge("the request body is larger than 1 MiB")
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise UnsupportedMedia("send a JSON body with 'Content-Type: application/json'")
    raw = await request.read()
    try:
        return loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, ensure_ascii=False).encode(), status=status, content_type="application/json"
    )
