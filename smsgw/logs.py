"""structlog set-up: JSON lines in production, a readable console in ``smsgw dev``; secrets never printed.

Our own lines go through structlog's native pipeline (a filtering logger: a disabled level costs nothing, and
no stdlib round trip), written straight to stdout. Lines from other libraries (aiohttp, asyncio) come in
through stdlib logging and get the same processors. The redaction processor runs last before rendering, on
every value of every line: it blanks the configured secrets wherever they appear, any ``key=...`` query
parameter (uBill's key travels in URLs) and bearer tokens, and masks phone numbers (``995511***242``).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import orjson
import structlog

from smsgw.phones import mask

__all__ = ["configure", "redactor"]

_QUERY_KEY = re.compile(r"(?i)([?&;\s\"']key=)[^&\s\"']+")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def redactor(secrets: Iterable[str]) -> structlog.types.Processor:
    values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def clean(text: str) -> str:
        for secret in values:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        if "ey=" in text or "EY=" in text:
            text = _QUERY_KEY.sub(r"\1[redacted]", text)
        if "earer" in text or "EARER" in text:
            text = _BEARER.sub(r"\1[redacted]", text)
        return mask(text)

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return clean(value)
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [scrub(v) for v in value]
        return value

    def process(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = scrub(value)
        return event_dict

    return process


def configure(fmt: str = "json", level: str = "info", secrets: Iterable[str] = (), process: str = "") -> None:
    """Configure structlog, and route stdlib logging (aiohttp, asyncio) through the same processors."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if process:
        shared.append(_static("process", process))
    final: list[structlog.types.Processor] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redactor(secrets),
    ]
    # Our own lines: orjson straight to stdout's buffer; other libraries' lines go through stdlib (text).
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    native: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_line) if fmt == "json" else renderer
    )
    factory: Any = (
        structlog.BytesLoggerFactory(file=sys.stdout.buffer)
        if fmt == "json"
        else structlog.WriteLoggerFactory(file=sys.stdout)
    )
    structlog.configure(
        processors=[*shared, *final, native],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # aiohttp's access log carries query strings: our own request lines replace it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _orjson_line(event_dict: Any, **_kw: Any) -> bytes:
    return orjson.dumps(event_dict, default=repr)


def _static(key: str, value: str) -> structlog.types.Processor:
    def add(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault(key, value)
        return event_dict

    return add
