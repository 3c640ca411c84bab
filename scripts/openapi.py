"""Build ``smsgw/openapi.json``, the OpenAPI 3.1 document the gateway serves at ``/v1/openapi.json``.

The document is generated rather than hand-written so its limits (text length, recipients, validity,
statuses, priorities) come from the constants the gateway validates with: a changed limit cannot leave the
document behind.
The committed JSON is what the gateway serves (it ships as package data); ``tests/test_openapi.py`` fails when
it differs from what this script builds.

    python scripts/openapi.py           # rewrite smsgw/openapi.json
    python scripts/openapi.py --check   # exit 1 when smsgw/openapi.json is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from smsgw import __version__
from smsgw.command import (
    DEFAULT_VALIDITY,
    MAX_OTP_RECIPIENTS,
    MAX_RECIPIENTS,
    MAX_REFERENCE,
    MAX_SCHEDULE_AHEAD_S,
    MAX_TEXT,
    MAX_VALIDITY,
)
from smsgw.errors import PROBLEM_BASE
from smsgw.gateway.idempotency import MAX_KEY_LENGTH
from smsgw.settings import LANES, MAX_BODY_BYTES
from smsgw.store.events import EVENT_FIELDS
from smsgw.store.statuses import STATUSES, TERMINAL
from smsgw.ubill import REFUSALS
from smsgw.verify import openapi as verifications
from smsgw.verify.openapi import ref as _ref
from smsgw.verify.openapi import responses as _responses

__all__ = ["TARGET", "build", "render"]

TARGET = Path(__file__).resolve().parent.parent / "smsgw" / "openapi.json"
Schema = dict[str, Any]

PROBLEM_JSON = "application/problem+json"
JSON = "application/json"
TEXT = "text/plain"
STREAM_ID_PATTERN = r"^[0-9]{1,20}(-[0-9]{1,20})?$"
EXAMPLE_ID = "msg_19abc0de1f2a3b4c5d6e7f8091"
EXAMPLE_TIME = "2026-11-25T09:00:00.000Z"


def _schema(name: str) -> Schema:
    return _ref("schemas", name)


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _problem_response(description: str, *, validation: bool = False, retry_after: bool = False) -> Schema:
    response: Schema = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _schema("ValidationProblem" if validation else "Problem")}},
    }
    if retry_after:
        response["headers"] = {"Retry-After": _ref("headers", "Retry-After")}
    return response


def _ubill_response(description: str, *, retry_after: bool = False) -> Schema:
    response: Schema = {"description": description, "content": {JSON: {"schema": _schema("UbillRefusal")}}}
    if retry_after:
        response["headers"] = {"Retry-After": _ref("headers", "Retry-After")}
    return response


def _schemas() -> dict[str, Schema]:
    statuses = list(STATUSES)
    return {
        "Status": {
            "type": "string",
            "enum": statuses,
            "description": (
                "A recipient's status. `submitted`: uBill accepted the call; `rejected`: uBill refused it; "
                "`unknown`: the outcome could not be established (not terminal: a later callback or report "
                "may settle it). Terminal, never changing again: "
                + ", ".join(f"`{s}`" for s in statuses if s in TERMINAL)
                + "."
            ),
        },
        "MessageStatus": {
            "type": "string",
            "enum": [*statuses, "mixed"],
            "description": "The recipients' status when they all share one, otherwise `mixed`.",
        },
        "Priority": {
            "type": "string",
            "enum": list(LANES),
            "description": (
                "The lane. `otp` maps to uBill's `otp=true`, needs the client's OTP permission and allows at "
                f"most {MAX_OTP_RECIPIENTS} recipients (after normalisation and de-duplication)."
            ),
        },
        "Number": {
            "type": "string",
            "pattern": r"^\d{6,15}$",
            "description": "International digits only, no `+` or `00`, as uBill wants them.",
            "examples": ["995511194242"],
        },
        "SendRequest": {
            "type": "object",
            "required": ["to", "text"],
            "additionalProperties": False,
            "properties": {
                "to": {
                    "description": (
                        f"1 to {MAX_RECIPIENTS:,} phone numbers (or one as a string). `+`, a leading `00`, "
                        "spaces, dashes and brackets are accepted and normalised to digits. Numbers that are "
                        "not valid, or not of an allowed country, are refused (422, each named); duplicates "
                        "are sent once."
                    ),
                    "oneOf": [
                        {"type": "string", "minLength": 1},
                        {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_RECIPIENTS,
                            "items": {"type": "string", "minLength": 1},
                        },
                    ],
                    "examples": [["+995 511 19-42-42", "995511194243"]],
                },
                "text": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_TEXT,
                    "pattern": r"\S",
                    "description": f"1 to {MAX_TEXT:,} characters of any Unicode, not blank.",
                    "examples": ["Your code is 1234"],
                },
                "brand_id": {
                    "type": ["integer", "null"],
                    "description": "uBill sender name id; optional when the client has a default brand. "
                    "Refused (422) while uBill's last brand reading shows it unknown or not approved.",
                    "examples": [1],
                },
                "priority": {**_schema("Priority"), "default": "transactional"},
                "send_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": (
                        "RFC 3339 with an offset; in the future and at most "
                        f"{MAX_SCHEDULE_AHEAD_S // 86_400} days ahead. The message is `scheduled` until then."
                    ),
                },
                "validity": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": MAX_VALIDITY,
                    "description": (
                        "Seconds from `created_at` (or `send_at`) within which the message must be handed to "
                        f"uBill, else it expires. Default {DEFAULT_VALIDITY['otp']} for otp, "
                        f"{DEFAULT_VALIDITY['transactional']:,} otherwise."
                    ),
                },
                "stop_list": {
                    "type": "boolean",
                    "default": True,
                    "description": "`false` maps to uBill's `stopList=false`.",
                },
                "reference": {
                    "type": ["string", "null"],
                    "maxLength": MAX_REFERENCE,
                    "description": "The caller's own id, echoed in every status and event.",
                    "examples": ["order-7"],
                },
            },
        },
        "Recipient": {
            "type": "object",
            "required": ["number", "status", "provider_sms_id", "updated_at", "error"],
            "additionalProperties": False,
            "properties": {
                "number": _schema("Number"),
                "status": _schema("Status"),
                "provider_sms_id": {
                    "type": ["string", "null"],
                    "description": "uBill's smsID of the call that carried this recipient, once known.",
                },
                "updated_at": {"type": "string", "format": "date-time"},
                "error": {"type": ["string", "null"], "description": "Why it was rejected or failed."},
            },
        },
        "Message": {
            "type": "object",
            "required": [
                "id",
                "status",
                "counts",
                "priority",
                "brand_id",
                "reference",
                "segments",
                "encoding",
                "created_at",
                "send_at",
                "expires_at",
            ],
            "description": (
                "A message. `recipients` is left out when the request said `Prefer: return=minimal` (large "
                "messages: page through `GET /v1/messages/{id}/recipients` instead)."
            ),
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "examples": [EXAMPLE_ID]},
                "status": _schema("MessageStatus"),
                "counts": {
                    "type": "object",
                    "description": "Each status to its number of recipients.",
                    "propertyNames": _schema("Status"),
                    "additionalProperties": {"type": "integer", "minimum": 1},
                },
                "priority": _schema("Priority"),
                "brand_id": {"type": "integer"},
                "reference": {"type": ["string", "null"], "maxLength": MAX_REFERENCE},
                "segments": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "SMS parts uBill bills per recipient.",
                },
                "encoding": {
                    "type": "string",
                    "enum": ["GSM-7", "UCS-2"],
                    "description": (
                        "GSM-7: 160 characters, 153 per part, extension characters count 2. UCS-2: 70, "
                        "67 per part, characters outside the BMP count 2."
                    ),
                },
                "created_at": {"type": "string", "format": "date-time"},
                "send_at": {"type": ["string", "null"], "format": "date-time"},
                "expires_at": {"type": "string", "format": "date-time"},
                "recipients": {"type": "array", "minItems": 1, "items": _schema("Recipient")},
            },
        },
        "RecipientPage": {
            "type": "object",
            "required": ["recipients", "next_cursor"],
            "additionalProperties": False,
            "properties": {
                "recipients": {"type": "array", "items": _schema("Recipient")},
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "Pass as `cursor` for the next page; null on the last page.",
                },
            },
        },
        "Event": {
            "type": "object",
            "description": (
                "One status change of one recipient, as published on Redis (`smsgw:events`, "
                "`smsgw:events:{client}`), kept in the client's stream and served by `GET /v1/events`."
            ),
            "required": list(EVENT_FIELDS),
            "additionalProperties": False,
            "properties": {
                "message_id": {"type": "string"},
                "client": {"type": "string", "description": "The configured client name."},
                "reference": {"type": ["string", "null"]},
                "number": _schema("Number"),
                "status": _schema("Status"),
                "provider_sms_id": {"type": ["string", "null"]},
                "provider_status_id": {
                    "type": ["integer", "null"],
                    "description": "uBill's callback/report statusID when uBill caused the change.",
                },
                "occurred_at": {"type": "string", "format": "date-time"},
            },
        },
        "ServerSentEvent": {
            "type": "object",
            "description": (
                "One server-sent event of the stream (the OpenAPI 3.2 `itemSchema` convention): `id` is the "
                "Redis stream id to resume from, `data` the Event (`event: status`) or VerificationEvent "
                "(`event: verification`) as JSON. Comment lines (`: keep-alive`) "
                "carry no event, nor does the position frame each stream starts with (`id:` without data)."
            ),
            "required": ["id", "event", "data"],
            "properties": {
                "id": {"type": "string", "pattern": STREAM_ID_PATTERN},
                "event": {"enum": ["status", "verification"]},
                "data": {"type": "string", "contentMediaType": JSON},
            },
            "oneOf": [
                {
                    "properties": {
                        "event": {"const": "status"},
                        "data": {"contentMediaType": JSON, "contentSchema": _schema("Event")},
                    },
                },
                {
                    "properties": {
                        "event": {"const": "verification"},
                        "data": {"contentMediaType": JSON, "contentSchema": _schema("VerificationEvent")},
                    },
                },
            ],
        },
        "FieldError": {
            "type": "object",
            "required": ["field", "message"],
            "properties": {
                "field": {
                    "type": "string",
                    "description": "The request field (`to[3]` for one number; `` for the whole body).",
                },
                "message": {"type": "string"},
            },
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "format": "uri", "examples": [PROBLEM_BASE + "not-found"]},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "errors": {"type": "array", "items": _schema("FieldError")},
                "nothing_changed": {
                    "const": True,
                    "description": "503 only, and only where proven (a send that never reached Redis, or "
                    "whose outcome the gateway found out): the call changed nothing, so even a call that is "
                    "not idempotent may be repeated. Absent from a 503 after a write whose reply was lost.",
                },
            },
        },
        "ValidationProblem": {
            "allOf": [
                _schema("Problem"),
                {
                    "type": "object",
                    "required": ["errors"],
                    "properties": {
                        "status": {"const": 422},
                        "errors": {"type": "array", "minItems": 1, "items": _schema("FieldError")},
                    },
                },
            ],
        },
        "DeadLetter": {
            "type": "object",
            "required": [
                "id",
                "message_id",
                "unit",
                "client",
                "priority",
                "numbers",
                "reason",
                "attempts",
                "dead_at",
            ],
            "properties": {
                "id": {
                    "type": "string",
                    "description": "`{message_id}:{unit}`",
                    "examples": [EXAMPLE_ID + ":0"],
                },
                "message_id": {"type": "string"},
                "unit": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "The uBill call within the message.",
                },
                "client": {"type": ["string", "null"]},
                "priority": {"anyOf": [_schema("Priority"), {"type": "null"}]},
                "numbers": {"type": "array", "items": {"type": "string"}},
                "reason": {"type": "string"},
                "attempts": {"type": "integer", "minimum": 0},
                "dead_at": {"type": "string", "format": "date-time"},
            },
        },
        "DeadLetters": {
            "type": "object",
            "required": ["dead_letters"],
            "properties": {"dead_letters": {"type": "array", "items": _schema("DeadLetter")}},
        },
        "UbillSendParameters": {
            "type": "object",
            "description": "uBill's send parameters; the gateway token may come as `key` here.",
            "required": ["numbers", "text"],
            "properties": {
                "key": {"type": "string", "description": "The gateway token (in place of uBill's key)."},
                "brandID": {"type": ["integer", "string"], "description": "Defaults to the client's brand."},
                "numbers": {
                    "oneOf": [
                        {"type": "string", "description": "Comma-separated numbers."},
                        {"type": "array", "items": {"type": ["string", "integer"]}},
                    ],
                },
                "text": {"type": "string"},
                "stopList": {"type": ["boolean", "string"], "description": "`false` bypasses the stop list."},
                "otp": {"type": ["boolean", "string"], "description": "`true`: the OTP lane."},
                "sendTime": {
                    "type": "string",
                    "description": "`Y-m-d H:i`, Asia/Tbilisi time.",
                    "examples": ["2026-12-01 13:00"],
                },
            },
        },
        "UbillSendAccepted": {
            "type": "object",
            "required": ["statusID", "smsID", "message"],
            "properties": {
                "statusID": {"const": 0},
                "smsID": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "The gateway's own id for the message (use it for reports).",
                },
                "message": {"type": "string"},
            },
        },
        "UbillRefusal": {
            "type": "object",
            "description": "uBill's refusal shape. statusIDs: "
            + ", ".join(f"{k} {v}" for k, v in REFUSALS.items())
            + ".",
            "required": ["statusID", "message"],
            "properties": {
                "statusID": {"type": "integer", "minimum": 1, "examples": list(REFUSALS)},
                "message": {"type": "string"},
            },
        },
        "UbillReport": {
            "type": "object",
            "required": ["statusID", "result"],
            "properties": {
                "statusID": {"const": 0},
                "result": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["number", "statusID"],
                        "properties": {
                            "number": _schema("Number"),
                            "statusID": {
                                "type": "string",
                                "enum": ["0", "1", "2", "3", "4"],
                                "description": "0 sent, 1 delivered, 2 failed, 3 pending, 4 error.",
                            },
                        },
                    },
                },
            },
        },
        "UbillBrandName": {
            "type": "object",
            "required": ["id", "name", "authorized", "createdAt"],
            "properties": {
                "id": {"type": "string", "pattern": r"^\d+$", "examples": ["1"]},
                "name": {"type": "string", "examples": ["SMSGW"]},
                "authorized": {
                    "type": "string",
                    "enum": ["1", "2"],
                    "description": "`1` approved by uBill, `2` not (yet).",
                },
                "createdAt": {"type": "string", "description": "As uBill reports it."},
            },
        },
        "UbillBrandNames": {
            "type": "object",
            "description": "The brands this client may use, as uBill listed them at the worker's last "
            "reading; `data` and `brands` carry the same list (public uBill clients read one or the other).",
            "required": ["statusID", "data", "brands"],
            "properties": {
                "statusID": {"const": 0},
                "data": {"type": "array", "items": _schema("UbillBrandName")},
                "brands": {"type": "array", "items": _schema("UbillBrandName")},
            },
        },
        "UbillBalance": {
            "type": "object",
            "required": ["statusID", "sms"],
            "properties": {
                "statusID": {"const": 0},
                "sms": {
                    "type": "string",
                    "pattern": r"^-?\d+$",
                    "description": "Remaining SMS (uBill's reading).",
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "redis", "durability"],
            "properties": {
                "status": {"const": "ready"},
                "redis": {"const": "ok"},
                "durability": {
                    "type": "object",
                    "required": ["appendonly", "appendfsync", "durable"],
                    "properties": {
                        "appendonly": {"type": "string"},
                        "appendfsync": {"type": "string"},
                        "durable": {
                            "type": "boolean",
                            "description": "AOF with `appendfsync always`: no accepted work is lost.",
                        },
                    },
                },
                "warning": {"type": "string", "description": "Present when Redis is not durable."},
            },
        },
    }


def _shared_responses() -> dict[str, Schema]:
    return {
        "BadRequest": _problem_response("Malformed JSON, header or parameter."),
        "Unauthorized": {
            **_problem_response("Missing or unknown bearer token."),
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        },
        "Forbidden": _problem_response("The client may not use this brand, OTP, or admin call."),
        "NotFound": _problem_response("Unknown id, or one that belongs to another client."),
        "Conflict": _problem_response("The request conflicts with the resource's state."),
        "PayloadTooLarge": _problem_response(f"The body is over {MAX_BODY_BYTES // 1024 // 1024} MiB."),
        "UnsupportedMediaType": _problem_response("The body is not declared as JSON."),
        "ValidationFailed": _problem_response(
            "The request is not valid; `errors` names every field.", validation=True
        ),
        "TooManyRequests": _problem_response(
            "Over the client's rate; retry after `Retry-After` seconds.", retry_after=True
        ),
        "ServiceUnavailable": _problem_response(
            "Redis is unavailable: nothing was accepted. Only a problem whose `type` ends in "
            "`/outcome-unknown` means the gateway could not establish whether it was stored (a retry "
            "with the same `Idempotency-Key` is safe).",
            retry_after=True,
        ),
    }


def _message_links() -> Schema:
    by_id = {"id": "$response.body#/id"}
    return {
        "GetMessage": {"operationId": "getMessage", "parameters": by_id},
        "CancelMessage": {"operationId": "cancelMessage", "parameters": by_id},
    }


def _messages() -> dict[str, Schema]:
    message = {JSON: {"schema": _schema("Message")}}
    return {
        "/v1/messages": {
            "post": {
                "operationId": "sendMessage",
                "tags": ["messages"],
                "summary": "Send a message to one or more numbers",
                "description": (
                    "202 means durably stored: no accepted recipient is ever lost. The same "
                    "`Idempotency-Key` with the same JSON body (whatever its formatting) from the same "
                    "client within 24 h returns the original answer and sends nothing; with a different "
                    "body it is 422. Concurrent duplicates store one message (the others answer it as "
                    "replays). A 503 means nothing was stored, except the one whose `type` ends in "
                    "`/outcome-unknown`: a retry with the same `Idempotency-Key` is then safe."
                ),
                "parameters": [_ref("parameters", "IdempotencyKey"), _ref("parameters", "Prefer")],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _schema("SendRequest")}},
                },
                "responses": _responses(
                    "BadRequest",
                    "Unauthorized",
                    "Forbidden",
                    "NotFound",
                    "Conflict",
                    "PayloadTooLarge",
                    "UnsupportedMediaType",
                    "ValidationFailed",
                    "TooManyRequests",
                    "ServiceUnavailable",
                    _202={
                        "description": "Accepted and durably stored.",
                        "content": message,
                        "links": _message_links(),
                    },
                ),
            },
        },
        "/v1/messages/{id}": {
            "parameters": [_ref("parameters", "MessageId")],
            "get": {
                "operationId": "getMessage",
                "tags": ["messages"],
                "summary": "A message with each recipient's status",
                "parameters": [_ref("parameters", "Prefer")],
                "responses": _responses(
                    "Unauthorized",
                    "NotFound",
                    "TooManyRequests",
                    "ServiceUnavailable",
                    _200={"description": "The message.", "content": message},
                ),
            },
            "delete": {
                "operationId": "cancelMessage",
                "tags": ["messages"],
                "summary": "Cancel every recipient not yet handed to uBill",
                "responses": _responses(
                    "Unauthorized",
                    "NotFound",
                    "TooManyRequests",
                    "ServiceUnavailable",
                    _200={"description": "The message after cancelling.", "content": message},
                    _409=_problem_response(
                        "Nothing could be cancelled: every recipient was handed to uBill or is final."
                    ),
                ),
            },
        },
        "/v1/messages/{id}/recipients": {
            "parameters": [_ref("parameters", "MessageId")],
            "get": {
                "operationId": "listRecipients",
                "tags": ["messages"],
                "summary": "A page of a message's recipients, optionally of one status",
                "description": (
                    "Recipients in request order; each page shows statuses as they are when it is read."
                ),
                "parameters": [
                    {"name": "status", "in": "query", "required": False, "schema": _schema("Status")},
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 1_000},
                    },
                    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": _responses(
                    "Unauthorized",
                    "NotFound",
                    "ValidationFailed",
                    "TooManyRequests",
                    "ServiceUnavailable",
                    _200={
                        "description": "One page.",
                        "content": {JSON: {"schema": _schema("RecipientPage")}},
                    },
                ),
            },
        },
        "/v1/events": {
            "get": {
                "operationId": "streamEvents",
                "tags": ["events"],
                "summary": "The client's own status events as server-sent events",
                "description": (
                    "An endless `text/event-stream` (comment keep-alives every 5 s). The first frame is the "
                    "stream's starting position: an `id:` line without data (the newest stream id, `0-0` "
                    "when there is none yet, or the `Last-Event-ID` given), which sets the client's last "
                    "event id and dispatches no event. Each event is `event: status` (`event: verification`: "
                    "a VerificationEvent), `id:` a Redis stream id, `data:` one Event as JSON. Reconnect "
                    "with the last id seen, or the announced "
                    "position before any event (`Last-Event-ID` header or `last_event_id` query), to get "
                    "exactly what was missed while events are kept (at least 24 h); `last_event_id=0` "
                    "replays everything kept. Without either, the stream starts after the newest event. The "
                    "gateway ends a stream at shutdown and one whose client reads too slowly (a comment "
                    "says why); open streams are capped per client and per gateway process (429)."
                ),
                "parameters": [
                    _ref("parameters", "LastEventIdHeader"),
                    _ref("parameters", "LastEventIdQuery"),
                ],
                "responses": _responses(
                    "BadRequest",
                    "Unauthorized",
                    "ServiceUnavailable",
                    _429=_problem_response(
                        "Over the client's rate, or too many open event streams: of this client "
                        "(`SMSGW_EVENTS_MAX_STREAMS_PER_CLIENT`) or of the gateway process "
                        "(`SMSGW_EVENTS_MAX_STREAMS`). Retry after `Retry-After` seconds, resuming with "
                        "`Last-Event-ID`.",
                        retry_after=True,
                    ),
                    _200={
                        "description": "The event stream.",
                        "content": {"text/event-stream": {"schema": _schema("ServerSentEvent")}},
                    },
                ),
            },
        },
    }


def _facade() -> dict[str, Schema]:
    ubill_security: list[Schema] = [{"bearer": []}, {"ubillKeyQuery": []}, {"ubillKeyHeader": []}]
    send_answer = {JSON: {"schema": {"oneOf": [_schema("UbillSendAccepted"), _schema("UbillRefusal")]}}}
    common = {
        "401": _ubill_response("Unknown key (statusID 99)."),
        "429": _ubill_response("Over the client's rate (statusID 99).", retry_after=True),
        "503": _ubill_response("Redis is unavailable: nothing was accepted (statusID 99).", retry_after=True),
    }
    query = [
        {
            "name": "brandID",
            "in": "query",
            "schema": {"type": "integer"},
            "description": "uBill brand id; defaults to the client's brand.",
        },
        {
            "name": "numbers",
            "in": "query",
            "schema": {"type": "string"},
            "description": "Comma-separated numbers.",
            "examples": {"one": {"value": "995511194242"}},
        },
        {"name": "text", "in": "query", "schema": {"type": "string"}},
        {
            "name": "stopList",
            "in": "query",
            "schema": {"type": "string"},
            "description": "`false` bypasses the stop list.",
        },
        {"name": "otp", "in": "query", "schema": {"type": "string"}, "description": "`true`: the OTP lane."},
        {
            "name": "sendTime",
            "in": "query",
            "schema": {"type": "string"},
            "description": "`Y-m-d H:i`, Asia/Tbilisi time, in the future.",
        },
    ]
    send_description = (
        "uBill's send, answered in uBill's shape: HTTP 200 with `statusID` 0 and the gateway's integer "
        "`smsID`, or a refusal `statusID` (10 brand not found, or unknown to or not approved by uBill at its "
        "last brand reading, 20 numbers not found, 30 empty text, 50 no "
        "valid numbers, 90 JSON error, 99 general error). Like uBill, invalid numbers are dropped from a "
        "call; only a call without a valid number is refused. The work is queued, prioritised, retried and "
        "tracked like `POST /v1/messages`."
    )
    return {
        "/v1/sms/send": {
            "get": {
                "operationId": "ubillSendGet",
                "tags": ["ubill-facade"],
                "summary": "uBill-compatible send (query parameters)",
                "description": send_description,
                "security": ubill_security,
                "parameters": query,
                "responses": {"200": {"description": "uBill's answer.", "content": send_answer}, **common},
            },
            "post": {
                "operationId": "ubillSendPost",
                "tags": ["ubill-facade"],
                "summary": "uBill-compatible send (JSON or form body)",
                "description": send_description + " Body parameters override query parameters.",
                "security": ubill_security,
                "requestBody": {
                    "content": {
                        JSON: {"schema": _schema("UbillSendParameters")},
                        "application/x-www-form-urlencoded": {"schema": _schema("UbillSendParameters")},
                    },
                },
                "responses": {
                    "200": {"description": "uBill's answer.", "content": send_answer},
                    "413": {
                        "description": "The body is over 1 MiB.",
                        "content": {
                            JSON: {"schema": _schema("UbillRefusal")},
                            PROBLEM_JSON: {"schema": _schema("Problem")},
                        },
                    },
                    **common,
                },
            },
        },
        "/v1/sms/report/{smsID}": {
            "get": {
                "operationId": "ubillReport",
                "tags": ["ubill-facade"],
                "summary": "uBill-compatible delivery report of a facade send",
                "security": ubill_security,
                "parameters": [
                    {
                        "name": "smsID",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "The `smsID` the facade's send answered.",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The report, or statusID 99 for an unknown smsID.",
                        "content": {
                            JSON: {"schema": {"oneOf": [_schema("UbillReport"), _schema("UbillRefusal")]}}
                        },
                    },
                    "401": common["401"],
                    "429": _ubill_response("Over the client's rate (statusID 99)."),
                },
            },
        },
        "/v1/sms/brandNames": {
            "get": {
                "operationId": "ubillBrandNames",
                "tags": ["ubill-facade"],
                "summary": "uBill-compatible brand names: the client's brands as uBill last reported them",
                "description": "Brands the client may use that uBill did not list are left out, as uBill "
                "would (it lists the brands it has). Before the worker's first reading of uBill's brand "
                "names: statusID 99 with empty `data` and `brands`.",
                "security": ubill_security,
                "responses": {
                    "200": {
                        "description": "The brand names, or statusID 99 when not read yet.",
                        "content": {
                            JSON: {"schema": {"oneOf": [_schema("UbillBrandNames"), _schema("UbillRefusal")]}}
                        },
                    },
                    "401": common["401"],
                    "429": _ubill_response("Over the client's rate (statusID 99)."),
                    "503": _ubill_response("Redis is unavailable (statusID 99).", retry_after=True),
                },
            },
        },
        "/v1/sms/balance": {
            "get": {
                "operationId": "ubillBalance",
                "tags": ["ubill-facade"],
                "summary": "uBill-compatible balance, from the gateway's last reading of uBill's",
                "security": ubill_security,
                "responses": {
                    "200": {
                        "description": "The balance, or statusID 99 when not read yet.",
                        "content": {
                            JSON: {"schema": {"oneOf": [_schema("UbillBalance"), _schema("UbillRefusal")]}}
                        },
                    },
                    "401": common["401"],
                    "429": _ubill_response("Over the client's rate (statusID 99)."),
                },
            },
        },
    }


def _callbacks() -> dict[str, Schema]:
    def text(description: str, example: str) -> Schema:
        return {
            "description": description,
            "content": {TEXT: {"schema": {"type": "string"}, "example": example}},
        }

    return {
        "/callbacks/ubill": {
            "get": {
                "operationId": "ubillCallback",
                "tags": ["provider"],
                "summary": "uBill's delivery callback (the only path exposed outside the cluster)",
                "description": (
                    "Exactly what uBill sends. Answered 200 `OK` quickly, also for duplicates, out-of-order "
                    "statuses and statuses that arrive before the worker recorded the smsID (they are kept "
                    "and applied when it does). Bodies are plain text: uBill reads only the status code."
                ),
                "security": [],
                "parameters": [
                    {
                        "name": "key",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "The callback key (`SMSGW_CALLBACK_KEY`), compared in constant time.",
                    },
                    {
                        "name": "smsID",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"},
                    },
                    {"name": "number", "in": "query", "required": True, "schema": _schema("Number")},
                    {
                        "name": "statusID",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer", "enum": [0, 1, 2, 3, 4]},
                        "description": "0 sent, 1 delivered, 2 failed, 3 pending, 4 error.",
                    },
                    {
                        "name": "date",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"},
                        "description": "`Y-m-d H:i:s`, uBill's local time (Asia/Tbilisi).",
                    },
                ],
                "responses": {
                    "200": text("Recorded (or a duplicate).", "OK"),
                    "400": text("Malformed parameters.", "Bad Request: statusID: must be 0, 1, 2, 3 or 4"),
                    "403": text(
                        "Wrong or missing key, or a caller outside SMSGW_CALLBACK_ALLOWED_IPS.", "Forbidden"
                    ),
                },
            },
        },
    }


def _admin() -> dict[str, Schema]:
    return {
        "/v1/admin/dead-letters": {
            "get": {
                "operationId": "listDeadLetters",
                "tags": ["admin"],
                "summary": "uBill calls that exhausted their retries (admin clients only), newest first",
                "responses": _responses(
                    "Unauthorized",
                    "Forbidden",
                    "TooManyRequests",
                    "ServiceUnavailable",
                    _200={
                        "description": "Up to 500 dead letters.",
                        "content": {JSON: {"schema": _schema("DeadLetters")}},
                    },
                ),
            },
        },
        "/v1/admin/dead-letters/{id}/replay": {
            "post": {
                "operationId": "replayDeadLetter",
                "tags": ["admin"],
                "summary": "Send a dead letter's failed recipients again, as a new message",
                "description": (
                    "The new message's id is `{message_id}-r{unit}`, so a second replay is refused (409) and "
                    "never sends twice. The original recipients stay `failed`."
                ),
                "parameters": [
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "The dead letter's id, `{message_id}:{unit}`.",
                    }
                ],
                "responses": _responses(
                    "Unauthorized",
                    "Forbidden",
                    "NotFound",
                    "Conflict",
                    "TooManyRequests",
                    "ServiceUnavailable",
                    _202={
                        "description": "The replay message, accepted.",
                        "content": {JSON: {"schema": _schema("Message")}},
                    },
                ),
            },
        },
    }


def _operations() -> dict[str, Schema]:
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["operations"],
                "summary": "The process is alive",
                "security": [],
                "responses": {
                    "200": {"description": "Alive.", "content": {JSON: {"schema": _schema("Health")}}}
                },
            },
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["operations"],
                "summary": "Redis is reachable (and whether it is durable)",
                "security": [],
                "responses": {
                    "200": {"description": "Ready.", "content": {JSON: {"schema": _schema("Readiness")}}},
                    "503": _ref("responses", "ServiceUnavailable"),
                },
            },
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format 0.0.4.",
                        "content": {TEXT: {"schema": {"type": "string"}}},
                    }
                },
            },
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["operations"],
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {"description": "OpenAPI 3.1.", "content": {JSON: {"schema": {"type": "object"}}}}
                },
            },
        },
    }


def build() -> Schema:
    """The whole document as a dict (stable key order, so the JSON diff stays readable)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sms-gateway",
            "version": __version__,
            "summary": "The one place internal services send SMS through, in front of uBill.",
            "description": (
                "Every `/v1/*` call needs `Authorization: Bearer <token>` (401 otherwise; 403 when the "
                "brand, OTP or admin permission is missing), except the uBill facade (`/v1/sms/*`), which "
                "also takes the token where uBill clients put their key, and this document. Errors are RFC "
                "9457 problem details (`application/problem+json`). Times are RFC 3339 in UTC. Every "
                "answer carries an `X-Request-ID` (the caller's, when it sends a safe one)."
            ),
        },
        "tags": [
            {"name": "messages"},
            {"name": "verifications"},
            {"name": "events"},
            {"name": "ubill-facade"},
            {"name": "provider"},
            {"name": "admin"},
            {"name": "operations"},
        ],
        "security": [{"bearer": []}],
        "paths": {
            **_messages(),
            **verifications.paths(),
            **_facade(),
            **_callbacks(),
            **_admin(),
            **_operations(),
        },
        "components": {
            "schemas": {**_schemas(), **verifications.schemas()},
            "responses": _shared_responses(),
            "parameters": {
                "MessageId": {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "examples": {"id": {"value": EXAMPLE_ID}},
                },
                "Prefer": {
                    "name": "Prefer",
                    "in": "header",
                    "required": False,
                    "description": (
                        "RFC 7240. `return=minimal` leaves `recipients` out of the answer (with "
                        "`Preference-Applied: return=minimal`)."
                    ),
                    "schema": {"type": "string", "enum": ["return=minimal", "return=representation"]},
                },
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": f"1 to {MAX_KEY_LENGTH} printable ASCII characters; 400 otherwise.",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_KEY_LENGTH,
                        "pattern": r"^[!-~]([ -~]*[!-~])?$",
                    },
                },
                "LastEventIdHeader": {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "The last event id seen (a Redis stream id); 400 when not one.",
                    "schema": {"type": "string", "pattern": STREAM_ID_PATTERN},
                },
                "LastEventIdQuery": {
                    "name": "last_event_id",
                    "in": "query",
                    "required": False,
                    "description": "Like `Last-Event-ID`, for clients that cannot set headers (header wins).",
                    "schema": {"type": "string", "pattern": STREAM_ID_PATTERN},
                },
            },
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 1},
                },
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A client token from SMSGW_CLIENTS (only its sha256 is configured).",
                },
                "ubillKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "key",
                    "description": "The gateway token where uBill clients put uBill's key.",
                },
                "ubillKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "key",
                    "description": "The gateway token as uBill's `key` header.",
                },
            },
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed document is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is stale: run python scripts/openapi.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
