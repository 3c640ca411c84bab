"""``GET /callbacks/ubill``: uBill's delivery callbacks, validated, applied by one Lua call, answered fast.

Plain-text answers: uBill reads no bodies, only the status code (2xx = done, anything else = retry).
"""

from __future__ import annotations

import hmac
from ipaddress import ip_address

import structlog
from aiohttp import web

from smsgw.clock import now_ms
from smsgw.errors import StoreUnavailable
from smsgw.gateway.context import GATEWAY, REDIS_ERROR, Gateway
from smsgw.gateway.proxies import client_address
from smsgw.phones import mask
from smsgw.store.statuses import TERMINAL
from smsgw.ubill import Callback, parse_callback

__all__ = ["routes"]

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)


def _allowed(gw: Gateway, caller: str) -> bool:
    """``caller``: the peer, or behind trusted proxies the forwarded address (``proxies.client_address``)."""
    networks = gw.settings.callback_allowed_ips
    if not networks:
        return True
    try:
        peer = ip_address(caller)
    except ValueError:
        return False
    return any(peer in network for network in networks)


def _key_ok(gw: Gateway, request: web.Request) -> bool:
    given = request.query.get("key", "").encode("utf-8", "surrogateescape")
    expected = gw.settings.callback_key.reveal().encode()
    # No key configured must refuse everything, not accept a missing key.
    return bool(expected) and hmac.compare_digest(given, expected)


@routes.get("/callbacks/ubill")
async def ubill_callback(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    caller = client_address(request, gw.settings.trusted_proxies)
    if not _allowed(gw, caller):
        gw.metrics.callbacks.labels("-", "forbidden_ip").inc()
        log.warning("callback.forbidden_ip", peer=caller, via=request.remote)
        return web.Response(status=403, text="Forbidden")
    if not _key_ok(gw, request):
        gw.metrics.callbacks.labels("-", "bad_key").inc()
        log.warning("callback.bad_key", peer=caller, via=request.remote)
        return web.Response(status=403, text="Forbidden")
    try:
        callback = parse_callback(request.query)
    except ValueError as exc:
        gw.metrics.callbacks.labels("-", "bad_request").inc()
        return web.Response(status=400, text=f"Bad Request: {exc}")
    try:
        await apply_callback(gw, callback)
    except StoreUnavailable:
        request[REDIS_ERROR] = True  # uBill retries anything but a 2xx: nothing is lost
        return web.Response(status=503, text="Service Unavailable", headers={"Retry-After": "1"})
    return web.Response(text="OK")


async def apply_callback(gw: Gateway, callback: Callback) -> str:
    occurred = int(callback.occurred_at.timestamp() * 1000)
    applied = await gw.store.deliveries.apply(callback.sms_id, callback.number, callback.status_id, occurred)
    gw.metrics.callbacks.labels(applied.status, applied.outcome).inc()  # its repeat counts as a duplicate
    if applied.outcome in ("applied", "adopted") and applied.status in TERMINAL and applied.created_ms:
        elapsed = max(0.0, (now_ms() - applied.created_ms) / 1000)
        gw.metrics.final_latency.labels(applied.lane, applied.status).observe(elapsed)
    quiet = applied.outcome in ("applied", "duplicate")
    (log.debug if quiet else log.info)(
        "callback",
        sms_id=callback.sms_id,
        number=mask(callback.number),
        status=applied.status,
        outcome=applied.outcome,
    )
    if not applied.replicated:
        gw.metrics.callbacks.labels(applied.status, "unconfirmed").inc()
        raise StoreUnavailable("the status is on the primary, not yet on the replicas (WAIT): send it again")
    return applied.outcome
