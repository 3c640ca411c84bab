"""``/v1/verifications``: phone verification owned end to end (the contract's "Phone verification").

Create: validate, then one Lua script (Idempotency-Key, pumping block, abuse windows, pumping guard, the
record with the sealed code), then the SMS through the same accept path as ``POST /v1/messages``, on the OTP
lane, its text sealed. Two Redis round trips. Should the SMS provably not be stored (the accept script
refused, or Redis failed and the message is not there), the create is taken back and the caller gets the
error.

Resend sends the same code again (cooldown, sends limit, abuse limits); check compares in constant time and
counts every attempt on a pending verification. Codes are never logged, returned or published; numbers in
logs are masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from smsgw.clock import iso, now_ms
from smsgw.command import SendCommand
from smsgw.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    NothingAccepted,
    StoreOutcomeUnknown,
    StoreUnavailable,
    ValidationFailed,
)
from smsgw.gateway.context import GATEWAY, MESSAGE_ID, RETRY_ADVICE, Gateway, client_of
from smsgw.gateway.idempotency import MAX_KEY_LENGTH, body_hash
from smsgw.gateway.jsonio import json_response, read_json
from smsgw.gateway.submit import submit
from smsgw.phones import mask
from smsgw.segments import count_segments
from smsgw.settings import Client
from smsgw.store.events import stream_minid
from smsgw.store.records import new_message_id
from smsgw.store.verifications import Verifications
from smsgw.store.verifications import keys as vkeys
from smsgw.store.verifications.records import NewVerification, Verification
from smsgw.verify import limits, templates
from smsgw.verify.codes import codes_match, new_code, new_verification_id
from smsgw.verify.metrics import VerifyMetrics
from smsgw.verify.sealing import code_context, seal_sms_text
from smsgw.verify.sweep import sweep_forever
from smsgw.verify.validation import validate_check, validate_start

__all__ = ["VERIFY", "Verifier", "routes", "setup"]

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


@dataclass(frozen=True)
class Verifier:
    store: Verifications
    metrics: VerifyMetrics


VERIFY = web.AppKey("verify", Verifier)


def setup(app: web.Application) -> None:
    """Routes, scripts, metrics and the expiry sweep; call after the gateway's own resources are set up."""
    gw = app[GATEWAY]
    app[VERIFY] = Verifier(gw.store.verifications, VerifyMetrics(gw.metrics.registry))
    app.add_routes(routes)
    app.cleanup_ctx.append(_sweeper)
    source = gw.settings.verify.key_source
    if source == "callback_key":
        log.warning(
            "verification.secret_derived",
            detail="SMSGW_VERIFY_SECRETS is not set: codes are sealed with a key derived from "
            "SMSGW_CALLBACK_KEY; set your own so a callback key rotation does not void codes in flight",
        )
    elif source == "none":
        log.error("verification.no_secret", detail="set SMSGW_VERIFY_SECRETS: verifications cannot start")


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    gw, verify = app[GATEWAY], app[VERIFY]
    stop = asyncio.Event()
    task = asyncio.create_task(
        sweep_forever(
            verify.store,
            verify.metrics,
            gw.settings.verify.sweep_interval,
            gw.settings.events_retention,
            stop,
        )
    )
    yield
    stop.set()  # a flag: a cancel can be swallowed inside a Redis command on 3.11
    await asyncio.wait({task}, timeout=gw.settings.redis_timeout + 1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _require_otp(client: Client) -> None:
    if not client.otp:
        raise Forbidden(f"client {client.name} may not send otp messages, so it may not verify numbers")


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and (
        not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii()
    ):
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


async def _load(verify: Verifier, client: Client, verification_id: str) -> Verification:
    """The verification, or 404 when unknown or another client's (indistinguishable on purpose)."""
    verification = await verify.store.load(verification_id)
    if verification is None or verification.client != client.name:
        raise NotFound(f"no verification {verification_id}")
    return verification


async def _send_code(
    gw: Gateway, client: Client, verification: Verification, code: str, message_id: str, now: int
) -> None:
    """The code's SMS through the accept path of POST /v1/messages: OTP lane, valid for the verification's
    remaining time, its text sealed (the worker opens it for the uBill call)."""
    cfg = gw.settings.verify
    text = templates.render(verification.locale, code, _brand_name(gw, verification.brand_id))
    command = SendCommand(
        numbers=(verification.number,),
        text=seal_sms_text(cfg.keyring, text),
        brand_id=verification.brand_id,
        lane="otp",
        validity_s=max(1, math.ceil((verification.expires_ms - now) / 1000)),
        stop_list=False,  # a code the user just asked for is not marketing: uBill's stop list does not apply
        reference=verification.id,
        sealed=True,
        billing=count_segments(text),
    )
    # The request itself counted against the client's rate (middleware): the SMS does not count again.
    await submit(gw, client, command, message_id=message_id, rate=False)


def _brand_name(gw: Gateway, brand_id: int) -> str | None:
    """The service a code's text names: SMSGW_VERIFY_BRAND_NAMES first, else the name uBill reports."""
    return gw.settings.verify.brand_name(brand_id) or gw.brands.name(brand_id)


async def _take_back(
    gw: Gateway, verify: Verifier, key: str, undo: dict[str, Any], failure: Exception
) -> None:
    """After a failed submit that provably stored nothing, undo the create or resend (best effort: with
    Redis gone the record just expires). When the SMS may have been stored (outcome unknown), keep it. An
    undo that fails turns "nothing was accepted" into a plain outage: the record is still there."""
    if isinstance(failure, StoreOutcomeUnknown):
        return
    try:
        undone = await verify.store.undo(undo["id"], key, undo)
    except StoreUnavailable as exc:
        log.warning("verification.undo_failed", verification_id=undo["id"], error=str(exc))
        undone = False
    if not undone and isinstance(failure, NothingAccepted):  # it stays: do not say nothing changed
        raise StoreUnavailable(f"{failure}; the verification was not taken back") from None


def _refused(
    verify: Verifier, gw: Gateway, client: Client, result: list[Any], number: str, action: str
) -> None:
    reason, problem = limits.refusal(result, gw.settings.verify)
    verify.metrics.blocked.labels(client.name, reason).inc()
    fields = {
        "client": client.name,
        "reason": reason,
        "number": mask(number),
        "retry_after_s": problem.headers.get("Retry-After"),
    }
    if result[0] == "guard":
        verify.metrics.prefix_blocks.inc()
        log.warning(
            "verification.prefix_blocked",
            prefix=vkeys.prefix_of(number) + "xxxx",
            started=int(result[2]),
            approved=int(result[3]),
            block_s=gw.settings.verify.guard_block,
            **fields,
        )
    else:
        log.info(f"verification.{action}_refused", **fields)
    raise problem


async def _finish_key(verify: Verifier, record_key: str, digest: str, verification_id: str) -> None:
    """Finish the key of a create whose code's SMS is stored. Redis failing now does not undo the create: the
    answer stays 201 (a 503 would say nothing happened while the code goes out), and the key, still
    pending, is finished by the next request with it (``_replay_inflight``)."""
    try:
        await verify.store.finish_idempotency(record_key, digest, verification_id)
    except StoreUnavailable as exc:
        log.warning("verification.key_not_finished", verification_id=verification_id, error=str(exc))


async def _replay_inflight(
    request: web.Request, verify: Verifier, client: Client, record_key: str, digest: str, verification_id: str
) -> web.Response:
    """The key's create has not finished: still running, given up by its request (Redis ran its create
    script only after the gateway's timeout, or its SMS's accept too late to write), or answered "outcome
    unknown". Once the SMS is stored the create has happened: finish the key and answer it. While it is not,
    this request stores it: the same code under the message id the record names, which the accept script
    writes at most once, so the first request's accept, still running or not, cannot add a second SMS."""
    gw = request.app[GATEWAY]
    existing = await verify.store.load(verification_id)
    if existing is None or existing.client != client.name:
        raise Conflict("a request with this Idempotency-Key is still being processed")
    if not await gw.store.messages.exists(existing.message_id):
        now = now_ms()
        if existing.status_at(now) != "pending" or not existing.sealed_code:
            raise Conflict("a request with this Idempotency-Key is still being processed")
        code = gw.settings.verify.keyring.open(existing.sealed_code, code_context(existing.id))
        request[MESSAGE_ID] = existing.message_id
        with contextlib.suppress(Conflict):  # the first request's accept stored it meanwhile
            await _send_code(gw, client, existing, code, existing.message_id, now)
        log.info(
            "verification.create_taken_over",
            verification_id=existing.id,
            client=client.name,
            number=mask(existing.number),
        )
    await _finish_key(verify, record_key, digest, verification_id)
    request[MESSAGE_ID] = existing.message_id
    await gw.store.messages.replicated(record_key, existing.message_id)
    return json_response(existing.resource(now_ms()), status=201)


@routes.post("/v1/verifications")
async def start_verification(request: web.Request) -> web.Response:
    gw, verify, client = request.app[GATEWAY], request.app[VERIFY], client_of(request)
    _require_otp(client)
    body = await read_json(request)
    key = _idempotency_key(request)
    start = validate_start(body, client, gw.settings)
    cfg = gw.settings.verify
    now = now_ms()
    verification_id, message_id = new_verification_id(), new_message_id()
    code = new_code(start.code_length)
    new = NewVerification(
        id=verification_id,
        client=client.name,
        number=start.number,
        brand_id=start.brand_id,
        locale=start.locale,
        reference=start.reference,
        sealed_code=cfg.keyring.seal(code, code_context(verification_id)),
        created_ms=now,
        expires_ms=now + start.ttl_s * 1000,
        message_id=message_id,
    )
    safe = start.number in cfg.safe_numbers
    prefix = vkeys.prefix_of(start.number)
    record_key = vkeys.idempotency(client.name, key) if key is not None else ""
    digest = body_hash(body) if key is not None else ""
    args = {
        "id": verification_id,
        "now": now,
        "ea": new.expires_ms,
        "digest": digest,
        "idem_ttl": start.ttl_s,  # reserved while its code may still arrive: no second one meanwhile
        "safe": safe,
        "lim": limits.window_args(cfg),
        "g": limits.guard_args(cfg),
        "prefix": prefix,
        "f": new.fields(),
        "ttl": start.ttl_s + cfg.retention,
    }
    result = await verify.store.create(
        args, verification_id=verification_id, number=start.number, client=client.name, record_key=record_key
    )
    kind = str(result[0])
    if kind == "replay":
        existing = await _load(verify, client, str(result[1]))
        request[MESSAGE_ID] = existing.message_id
        await gw.store.messages.replicated(record_key, existing.message_id)
        return json_response(existing.resource(now_ms()), status=201)
    if kind == "inflight":
        return await _replay_inflight(request, verify, client, record_key, digest, str(result[1]))
    if kind == "mismatch":
        raise ValidationFailed(
            [{"field": "Idempotency-Key", "message": "already used with a different request body"}]
        )
    if kind == "exists":
        raise Conflict(f"verification {verification_id} already exists")
    if kind != "ok":
        _refused(verify, gw, client, result, start.number, "start")
    started, approved = int(result[1]), int(result[2])
    if cfg.guard_min_started and started >= max(1, cfg.guard_min_started // 2):
        verify.metrics.conversion.observe(approved / started)
    view = Verification.from_hash(
        verification_id, dict(zip(new.fields()[::2], new.fields()[1::2], strict=True))
    )
    request[MESSAGE_ID] = message_id
    try:
        await _send_code(gw, client, view, code, message_id, now)
    except Conflict:
        pass  # a retry with the same key stored this SMS (``_replay_inflight``): the create has happened
    except Exception as failure:
        undo = {"id": verification_id, "mode": "create", "mid": message_id, "digest": digest}
        await _take_back(gw, verify, record_key, undo, failure)
        raise
    if key is not None:  # the reservation made by create.lua becomes the finished record
        await _finish_key(verify, record_key, digest, verification_id)
    verify.metrics.started.labels(client.name).inc()
    verify.metrics.sends.labels(client.name, "create").inc()
    if safe:
        verify.metrics.safe_listed.labels(client.name).inc()
    log.info(
        "verification.started",
        verification_id=verification_id,
        client=client.name,
        number=mask(start.number),
        code_length=start.code_length,
        ttl_s=start.ttl_s,
        locale=start.locale,
        safe_listed=safe,
    )
    return json_response(view.resource(now), status=201)


@routes.get("/v1/verifications/{id}")
async def get_verification(request: web.Request) -> web.Response:
    verify, client = request.app[VERIFY], client_of(request)
    _require_otp(client)
    verification = await _load(verify, client, request.match_info["id"])
    request[MESSAGE_ID] = verification.message_id
    return json_response(verification.resource(now_ms()))


@routes.post("/v1/verifications/{id}/resend")
async def resend_verification(request: web.Request) -> web.Response:
    gw, verify, client = request.app[GATEWAY], request.app[VERIFY], client_of(request)
    _require_otp(client)
    cfg = gw.settings.verify
    verification = await _load(verify, client, request.match_info["id"])
    now = now_ms()
    message_id = new_message_id()
    args = {
        "id": verification.id,
        "client": client.name,
        "now": now,
        "iso": iso(now),
        "minid": stream_minid(now, gw.settings.events_retention),
        "cooldown_ms": cfg.resend_cooldown * 1000,
        "max_sends": cfg.max_sends,
        "safe": verification.number in cfg.safe_numbers,
        "lim": limits.window_args(cfg),
        "mid": message_id,
    }
    result = await verify.store.resend(verification.id, args)
    kind = str(result[0])
    if kind == "missing":
        raise NotFound(f"no verification {verification.id}")
    if kind == "final":
        if int(result[2]):
            verify.metrics.finished.labels(client.name, "expired").inc()
        raise Conflict(f"verification {verification.id} is {result[1]}: nothing is sent any more")
    if kind != "ok":
        _refused(verify, gw, client, result, verification.number, "resend")
    sends = int(result[1])
    code = cfg.keyring.open(str(result[3]), code_context(verification.id))
    request[MESSAGE_ID] = message_id
    request[RETRY_ADVICE] = (  # a resend takes no Idempotency-Key: say what is safe instead
        "The resend counts against the verification's sends either way; "
        f"GET /v1/messages/{message_id} answers 404 if it was not stored, "
        "and a resend after the cooldown sends the same code again."
    )
    try:
        await _send_code(gw, client, verification, code, message_id, now)
    except Exception as failure:
        undo = {
            "id": verification.id,
            "mode": "resend",
            "mid": message_id,
            "digest": "",
            "prev_mid": str(result[8]),
            "prev_last": str(result[9]),
        }
        await _take_back(gw, verify, "", undo, failure)
        raise
    verify.metrics.sends.labels(client.name, "resend").inc()
    log.info(
        "verification.resent",
        verification_id=verification.id,
        client=client.name,
        number=mask(verification.number),
        sends=sends,
    )
    resent = dataclasses.replace(verification, sends=sends, message_id=message_id, last_send_ms=now)
    return json_response(resent.resource(now))


@routes.post("/v1/verifications/{id}/check")
async def check_verification(request: web.Request) -> web.Response:
    gw, verify, client = request.app[GATEWAY], request.app[VERIFY], client_of(request)
    _require_otp(client)
    cfg = gw.settings.verify
    given = validate_check(await read_json(request))
    verification = await _load(verify, client, request.match_info["id"])
    now = now_ms()
    if verification.status == "approved":
        verify.metrics.checks.labels(client.name, "final").inc()
        raise Conflict(f"verification {verification.id} is already approved; a code is good once")
    if verification.status != "pending":
        verify.metrics.checks.labels(client.name, "final").inc()
        return json_response({"status": verification.status, "attempts": verification.attempts})
    # Opened and compared whatever the input: the time taken does not depend on the guess.
    expected = cfg.keyring.open(verification.sealed_code, code_context(verification.id))
    match = codes_match(given, expected)
    counts_approval = cfg.guard_min_started > 0 and verification.number not in cfg.safe_numbers
    args = {
        "id": verification.id,
        "client": client.name,
        "match": match,
        "max_attempts": cfg.max_attempts,
        "now": now,
        "iso": iso(now),
        "minid": stream_minid(now, gw.settings.events_retention),
        "approval_window_ms": cfg.guard_window * 1000 if counts_approval else 0,
    }
    result = await verify.store.check(verification.id, args)
    if result[0] == "missing":
        raise NotFound(f"no verification {verification.id}")
    status, attempts, changed = str(result[0]), int(result[1]), bool(int(result[2]))
    if status == "approved" and not changed:  # a concurrent check approved it first
        verify.metrics.checks.labels(client.name, "final").inc()
        raise Conflict(f"verification {verification.id} is already approved; a code is good once")
    outcome = {"approved": "approved", "failed": "failed", "pending": "wrong"}.get(status, "final")
    verify.metrics.checks.labels(client.name, outcome).inc()
    if changed:
        verify.metrics.finished.labels(client.name, status).inc()
    log.info(
        "verification.checked",
        verification_id=verification.id,
        client=client.name,
        number=mask(verification.number),
        status=status,
        attempts=attempts,
    )
    return json_response({"status": status, "attempts": attempts})
