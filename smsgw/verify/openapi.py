"""The ``/v1/verifications`` part of the OpenAPI document: ``scripts/openapi.py`` merges it into
``smsgw/openapi.json``. Limits and defaults come from the constants and settings the gateway enforces.
"""

from __future__ import annotations

from typing import Any

from smsgw.store.verifications.records import STATUSES
from smsgw.verify import codes, templates
from smsgw.verify.config import VerifySettings
from smsgw.verify.validation import DEFAULT_TTL, MAX_CODE_INPUT, MAX_REFERENCE, MAX_TTL, MIN_TTL

__all__ = ["EXAMPLE_VERIFICATION_ID", "paths", "schemas"]

Schema = dict[str, Any]
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
EXAMPLE_VERIFICATION_ID = "ver_19abc0de1f2a1b2c3d4e5f60718"
_DEFAULTS = VerifySettings()


def ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def responses(*names: str, **specific: Schema) -> Schema:
    """Operation responses: ``specific`` (status code -> response) plus shared ones by component name."""
    codes_by_name = {
        "BadRequest": "400",
        "Unauthorized": "401",
        "Forbidden": "403",
        "NotFound": "404",
        "Conflict": "409",
        "PayloadTooLarge": "413",
        "UnsupportedMediaType": "415",
        "ValidationFailed": "422",
        "TooManyRequests": "429",
        "ServiceUnavailable": "503",
    }
    out: Schema = {code.removeprefix("_"): response for code, response in specific.items()}
    for name in names:
        out[codes_by_name[name]] = ref("responses", name)
    return dict(sorted(out.items()))


def _limited(description: str) -> Schema:
    return {
        "description": description,
        "headers": {"Retry-After": ref("headers", "Retry-After")},
        "content": {PROBLEM_JSON: {"schema": ref("schemas", "Problem")}},
    }


def _conflict(description: str) -> Schema:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": ref("schemas", "Problem")}}}


def schemas() -> dict[str, Schema]:
    d = _DEFAULTS
    return {
        "VerificationStatus": {
            "type": "string",
            "enum": list(STATUSES),
            "description": "`pending` until the right code is checked (`approved`), the attempts run out "
            "(`failed`) or the time does (`expired`); the last three never change again.",
        },
        "StartVerification": {
            "type": "object",
            "required": ["to"],
            "additionalProperties": False,
            "properties": {
                "to": {
                    "type": "string",
                    "minLength": 1,
                    "description": "One number in any usual notation, normalised like `POST /v1/messages`.",
                    "examples": ["+995 511 19-42-42"],
                },
                "brand_id": {
                    "type": ["integer", "null"],
                    "description": "uBill sender name id; optional when the client has a default brand.",
                },
                "code_length": {
                    "type": "integer",
                    "minimum": codes.MIN_LENGTH,
                    "maximum": codes.MAX_LENGTH,
                    "default": codes.DEFAULT_LENGTH,
                    "description": "Digits of the code, drawn from a CSPRNG.",
                },
                "ttl": {
                    "type": "integer",
                    "minimum": MIN_TTL,
                    "maximum": MAX_TTL,
                    "default": DEFAULT_TTL,
                    "description": "Seconds the verification (and its SMS) stays valid.",
                },
                "locale": {
                    "type": "string",
                    "enum": list(templates.LOCALES),
                    "default": templates.DEFAULT_LOCALE,
                    "description": "Language of the SMS: English (GSM-7) or Georgian (UCS-2).",
                },
                "reference": {
                    "type": ["string", "null"],
                    "maxLength": MAX_REFERENCE,
                    "description": "The caller's own id, echoed in the resource and in every event.",
                },
            },
        },
        "Verification": {
            "type": "object",
            "required": ["id", "to", "status", "expires_at", "sends", "attempts", "message_id", "reference"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "examples": [EXAMPLE_VERIFICATION_ID]},
                "to": ref("schemas", "Number"),
                "status": ref("schemas", "VerificationStatus"),
                "expires_at": {"type": "string", "format": "date-time"},
                "sends": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "description": f"SMS sent for it (at most {d.max_sends} by default).",
                },
                "attempts": {"type": "integer", "minimum": 0, "description": "Checks counted so far."},
                "message_id": {
                    "type": "string",
                    "description": "The latest SMS (`GET /v1/messages/{id}`; its text is never shown).",
                },
                "reference": {"type": ["string", "null"], "maxLength": MAX_REFERENCE},
            },
        },
        "CheckVerification": {
            "type": "object",
            "required": ["code"],
            "additionalProperties": False,
            "properties": {"code": {"type": "string", "minLength": 1, "maxLength": MAX_CODE_INPUT}},
        },
        "VerificationCheck": {
            "type": "object",
            "required": ["status", "attempts"],
            "additionalProperties": False,
            "properties": {
                "status": ref("schemas", "VerificationStatus"),
                "attempts": {"type": "integer", "minimum": 0},
            },
        },
        "VerificationEvent": {
            "type": "object",
            "description": "A verification's status change, on the channels and stream of message events "
            "(server-sent as `event: verification`). The code is never in it.",
            "required": [
                "kind",
                "verification_id",
                "client",
                "reference",
                "number",
                "status",
                "attempts",
                "occurred_at",
            ],
            "additionalProperties": False,
            "properties": {
                "kind": {"const": "verification"},
                "verification_id": {"type": "string"},
                "client": {"type": "string"},
                "reference": {"type": ["string", "null"]},
                "number": ref("schemas", "Number"),
                "status": ref("schemas", "VerificationStatus"),
                "attempts": {"type": "integer", "minimum": 0},
                "occurred_at": {"type": "string", "format": "date-time"},
            },
        },
    }


def _links() -> Schema:
    by_id = {"id": "$response.body#/id"}
    return {
        "GetVerification": {"operationId": "getVerification", "parameters": by_id},
        "CheckVerification": {"operationId": "checkVerification", "parameters": by_id},
        "ResendVerification": {"operationId": "resendVerification", "parameters": by_id},
    }


def paths() -> dict[str, Schema]:
    d = _DEFAULTS
    verification = {JSON: {"schema": ref("schemas", "Verification")}}
    path_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "examples": {"id": {"value": EXAMPLE_VERIFICATION_ID}},
    }
    abuse = (
        f"429 (`Retry-After`) beyond the abuse limits: {d.number_limit.count} SMS per number per "
        f"{d.number_limit.window} s (resends included), {d.prefix_limit.count} per number prefix (the number "
        f"without its last 4 digits), {d.client_limit.count} per client, by default; problem type "
        "`…/fraud-suspected` while the pumping guard blocks the prefix (at least "
        f"{d.guard_min_started} started in {d.guard_window} s with under {d.guard_min_conversion:.0%} "
        f"approved blocks it for {d.guard_block} s). Safe-listed numbers skip these limits."
    )
    return {
        "/v1/verifications": {
            "post": {
                "operationId": "startVerification",
                "tags": ["verifications"],
                "summary": "Start verifying a phone number: a code goes out by SMS on the OTP lane",
                "description": (
                    "Needs the client's OTP permission. The code is stored only sealed with a server secret "
                    "and is never returned, logged or published; its SMS is valid for the verification's "
                    "time. `Idempotency-Key` works as on `POST /v1/messages` (per client and per endpoint). "
                    + abuse
                ),
                "parameters": [ref("parameters", "IdempotencyKey")],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref("schemas", "StartVerification")}},
                },
                "responses": responses(
                    "BadRequest",
                    "Unauthorized",
                    "Forbidden",
                    "NotFound",
                    "PayloadTooLarge",
                    "UnsupportedMediaType",
                    "ValidationFailed",
                    "ServiceUnavailable",
                    _201={
                        "description": "Started: the SMS is stored.",
                        "content": verification,
                        "links": _links(),
                    },
                    _409=_conflict("A request with this Idempotency-Key is still being processed."),
                    _429=_limited("Over the client's rate, an abuse limit, or the pumping guard."),
                ),
            },
        },
        "/v1/verifications/{id}": {
            "parameters": [path_id],
            "get": {
                "operationId": "getVerification",
                "tags": ["verifications"],
                "summary": "A verification (without its code)",
                "responses": responses(
                    "Unauthorized",
                    "Forbidden",
                    "NotFound",
                    "ServiceUnavailable",
                    _200={"description": "The verification.", "content": verification},
                    _429=_limited("Over the client's rate."),
                ),
            },
        },
        "/v1/verifications/{id}/resend": {
            "parameters": [path_id],
            "post": {
                "operationId": "resendVerification",
                "tags": ["verifications"],
                "summary": "Send the same code again",
                "description": (
                    f"429 (`Retry-After`) within {d.resend_cooldown} s of the last send or beyond "
                    f"{d.max_sends} sends (defaults), and " + abuse.removeprefix("429 (`Retry-After`) ")
                ),
                "responses": responses(
                    "Unauthorized",
                    "Forbidden",
                    "NotFound",
                    "ServiceUnavailable",
                    _200={
                        "description": "Sent again: `sends` + 1, `message_id` of this SMS.",
                        "content": verification,
                    },
                    _409=_conflict("The verification is no longer pending: nothing is sent."),
                    _429=_limited("Cooldown, sends limit, abuse limits or the pumping guard."),
                ),
            },
        },
        "/v1/verifications/{id}/check": {
            "parameters": [path_id],
            "post": {
                "operationId": "checkVerification",
                "tags": ["verifications"],
                "summary": "Check a code (constant-time; every check of a pending verification counts)",
                "description": (
                    f"A wrong code leaves it `pending` until {d.max_attempts} attempts (default), then "
                    "`failed`. A failed or expired verification answers its status and counts nothing; an "
                    "approved one is 409 (a code is good once)."
                ),
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref("schemas", "CheckVerification")}},
                },
                "responses": responses(
                    "BadRequest",
                    "Unauthorized",
                    "Forbidden",
                    "NotFound",
                    "PayloadTooLarge",
                    "UnsupportedMediaType",
                    "ValidationFailed",
                    "ServiceUnavailable",
                    _200={
                        "description": "The verification's status after this check.",
                        "content": {JSON: {"schema": ref("schemas", "VerificationCheck")}},
                    },
                    _409=_conflict("Already approved."),
                    _429=_limited("Over the client's rate."),
                ),
            },
        },
    }
