"""uBill's endpoints under ``/v1/sms`` (send, report, balance, brand names), answered in uBill's shapes."""

from __future__ import annotations

import asyncio
import json
import time

import structlog
from aiohttp import web

from smsgw.phones import mask
from smsgw.sandbox import faults
from smsgw.sandbox.calls import INVALID_KEY, Accepted, check, key_matches, read_call
from smsgw.sandbox.runtime import SANDBOX, Sandbox
from smsgw.sandbox.state import Send
from smsgw.ubill import format_local

__all__ = ["routes"]

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()
_LOGGED_NUMBERS = 3


def _answer(body: dict[str, object], status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def _latency(sandbox: Sandbox) -> None:
    if sandbox.config.latency:
        await asyncio.sleep(sandbox.config.latency)


@routes.route("GET", "/v1/sms/send")
@routes.route("POST", "/v1/sms/send")
async def send(request: web.Request) -> web.StreamResponse:
    """Faults in uBill-outage order: stall, 5xx and 429 before anything is read, latency, then the checks;
    accept_error and drop only after the call was recorded, charged and its callbacks scheduled."""
    received = time.time()
    sandbox = request.app[SANDBOX]
    fault = faults.draw_fault(sandbox.config, sandbox.rng)
    if fault == "stall":
        return await faults.stall(request, sandbox.stopping)
    if fault == "error":
        return faults.server_error(sandbox.rng)
    if fault == "rate_limited":
        return faults.rate_limited()
    await _latency(sandbox)
    call = await read_call(request)
    decision = check(call, sandbox.config, sandbox.state.balance, sandbox.clock())
    if not isinstance(decision, Accepted):
        log.info("sandbox send refused", status_id=decision.status_id, reason=decision.message)
        return _answer(decision.body(), decision.http_status)
    record = _accept(sandbox, decision, call.method, fault or "ok", received)
    body = {"statusID": 0, "smsID": record.sms_id, "message": "Success"}
    if fault == "accept_error":
        return faults.accept_error()
    if fault == "drop":
        return await faults.drop(request, json.dumps(body).encode())
    return _answer(body)


def _accept(sandbox: Sandbox, accepted: Accepted, method: str, outcome: str, received: float) -> Send:
    """Record and charge the call, then schedule its callbacks (from sendTime when one was given)."""
    now = sandbox.clock()
    record = sandbox.state.accept(
        Send(
            sms_id=0,
            time=now,
            numbers=accepted.numbers,
            rejected_numbers=accepted.rejected_numbers,
            text=accepted.text,
            brand_id=accepted.brand_id,
            otp=accepted.otp,
            stop_list=accepted.stop_list,
            send_time=accepted.send_time,
            method=method,
            outcome=outcome,
            received=received,
        ),
        accepted.segments,
    )
    wait = (accepted.send_at - now).total_seconds() if accepted.send_at else 0.0
    sandbox.deliverer.schedule(record, wait + sandbox.config.callback_delay)
    log.info(
        "sandbox send accepted",
        sms_id=record.sms_id,
        numbers=len(record.numbers),
        first=mask(",".join(record.numbers[:_LOGGED_NUMBERS])),
        rejected=len(record.rejected_numbers),
        segments=accepted.segments,
        otp=record.otp,
        send_time=record.send_time,
        outcome=outcome,
    )
    return record


async def _authorised(request: web.Request, sandbox: Sandbox) -> bool:
    await _latency(sandbox)
    return key_matches(request.headers.get("key") or request.query.get("key"), sandbox.config)


@routes.get("/v1/sms/report/{sms_id}")
async def report(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    if not await _authorised(request, sandbox):
        return _answer(INVALID_KEY.body(), INVALID_KEY.http_status)
    raw = request.match_info["sms_id"]
    record = sandbox.state.find(int(raw)) if raw.isdigit() else None
    if record is None:
        return _answer({"statusID": 99, "message": "SMS not found"})
    return _answer({"statusID": 0, "result": record.report()})


@routes.get("/v1/sms/balance")
async def balance(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    if not await _authorised(request, sandbox):
        return _answer(INVALID_KEY.body(), INVALID_KEY.http_status)
    return _answer({"statusID": 0, "sms": str(sandbox.state.balance)})


@routes.get("/v1/sms/brandNames")
async def brand_names(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    if not await _authorised(request, sandbox):
        return _answer(INVALID_KEY.body(), INVALID_KEY.http_status)
    config, now = sandbox.config, sandbox.clock()
    brands = [
        {
            "id": str(i),
            "name": name,
            "authorized": "2" if i in config.unapproved_brands else "1",
            "createdAt": format_local(sandbox.state.brand_created(i, now)),
        }
        for i, name in config.brands.items()
    ]
    # Public clients read the list from `data` (uBill's docs) or `brands` (observed): both carry it.
    return _answer({"statusID": 0, "data": brands, "brands": brands})
