"""The OpenAPI document: valid OpenAPI 3.1, current with its generator, complete, true of the live gateway.

The last test runs schemathesis (its CLI, as a subprocess, so its blocking HTTP client never stalls the event
loop the gateway runs in) against ``/v1/openapi.json`` of a real gateway over a real Redis, and fails on any
5xx and on any answer whose status code, content type, headers or body the document does not allow.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from openapi_spec_validator import validate

from scripts.openapi import TARGET, render
from smsgw.gateway.app import create_app
from smsgw.gateway.context import GATEWAY
from smsgw.settings import Settings
from tests.harness import CALLBACK_KEY, TOKENS, Stack, base_env

SEED = 20261125
MAX_EXAMPLES = 60
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
)
# Per-operation knobs. No operation is excluded:
# - /callbacks/ubill gets the real callback key, or every call would stop at the 403 and the parsing and
#   recording behind it would never be fuzzed;
# - the admin endpoints get the admin client's token (client `auth` is no admin: it would only see 403s);
# - /v1/events never ends, so each call reads at most 3 events or 0.5 s; schemathesis validates each event
#   it read (its `data` against the Event schema), and `last_event_id=0` is offered often so there are some;
# - valid numbers, brands and callback dates are offered often, so fuzzing gets past validation to
#   acceptance, cancellation (the stateful phase follows the links to GET and DELETE) and callback recording.
CONFIG = """
generation.database = "none"

[dictionaries.numbers]
values = ["995511194242", "+995 511 19-42-43", "00995511194244", "995 (511) 194-245", "995-511-194-246"]

[dictionaries.digits]
values = ["995511194242", "995511194243", "995599000001"]

[dictionaries.brands]
values = [1, 2]

[dictionaries.idempotency_keys]
values = [{idempotency_keys}]

[dictionaries.stream_ids]
values = ["0", "0-0"]

[dictionaries.dates]
values = ["2026-11-25 13:00:00", "2026-01-31 23:59:59"]

[[operations]]
include-path = "/v1/messages"
include-method = "POST"
[operations.parameters]
"body.to[*]" = {{ dictionary = "numbers", probability = 0.7 }}
"body.brand_id" = {{ dictionary = "brands", probability = 0.8 }}
"header.Idempotency-Key" = {{ dictionary = "idempotency_keys", probability = 0.9 }}

[[operations]]
include-path = "/v1/verifications"
include-method = "POST"
[operations.parameters]
"body.to" = {{ dictionary = "numbers", probability = 0.8 }}
"body.brand_id" = {{ dictionary = "brands", probability = 0.8 }}

[[operations]]
include-path = "/callbacks/ubill"
[operations.parameters]
"query.key" = "{callback_key}"
"query.number" = {{ dictionary = "digits", probability = 0.7 }}
"query.date" = {{ dictionary = "dates", probability = 0.7 }}

[[operations]]
include-path-regex = "^/v1/admin/"
headers = {{ Authorization = "Bearer {admin_token}" }}

[[operations]]
include-path = "/v1/events"
request-timeout = 0.5
max-stream-events = 3
[operations.parameters]
"query.last_event_id" = {{ dictionary = "stream_ids", probability = 0.5 }}
"""


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(TARGET.read_text(encoding="utf-8"))
    return document


def test_document_is_valid_openapi_31() -> None:
    document = _document()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema or a dangling $ref


def test_document_is_what_the_generator_builds() -> None:
    assert TARGET.read_text(encoding="utf-8") == render(), "stale: run python scripts/openapi.py"


async def test_document_names_every_route_of_the_gateway() -> None:
    settings = Settings.from_env(base_env("redis://127.0.0.1:9/0", "http://127.0.0.1:9/v1"))
    app = create_app(settings)
    served: set[tuple[str, str]] = set()
    for route in app.router.routes():
        path = re.sub(r"\{[^}]+\}", "{}", route.resource.canonical if route.resource else "")
        methods = ("get", "post") if route.method == "*" else (route.method.lower(),)
        served |= {(method, path) for method in methods if method != "head"}
    gw = app[GATEWAY]
    await gw.redis.aclose()
    await gw.blocking.aclose()
    documented = {
        (method, re.sub(r"\{[^}]+\}", "{}", path))
        for path, item in _document()["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert served == documented
    assert len(served) >= 15


async def test_served_document_is_the_committed_one(redis_url: str) -> None:
    async with (
        Stack(redis_url, worker=False) as stack,
        stack.http.get(f"{stack.url}/v1/openapi.json") as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == _document()


async def _seed_events(stack: Stack) -> None:
    """A cancelled scheduled message leaves status events in the stream for `/v1/events` to replay."""
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    created = await stack.send(
        {"to": ["995511194242", "995511194243", "995511194244"], "text": "seed", "send_at": soon}
    )
    async with stack.http.delete(
        f"{stack.url}/v1/messages/{created['id']}", headers=stack.auth()
    ) as response:
        assert response.status == 200, await response.text()


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    # Many distinct keys: a key is single-use per body, and hypothesis would otherwise reuse its simplest one.
    idempotency_keys = ", ".join(f'"fuzz-{i}"' for i in range(400))
    config.write_text(
        CONFIG.format(
            callback_key=CALLBACK_KEY, admin_token=TOKENS["ops"], idempotency_keys=idempotency_keys
        ),
        encoding="utf-8",
    )
    report = tmp_path / "report.json"
    # The dictionary's numbers are testers: hundreds of verifications must reach 201, past the per-number
    # limits and the pumping guard (tested in tests/gateway/test_verification_limits.py).
    safe = {"SMSGW_VERIFY_SAFE_NUMBERS": ",".join(f"+99551119424{i}" for i in range(2, 7))}
    async with Stack(redis_url, env=safe, worker=False) as stack:
        await _seed_events(stack)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            f"{stack.url}/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {TOKENS['auth']}",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--no-color",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            cwd=tmp_path,  # schemathesis keeps its cache in ./.schemathesis: not in the work tree
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout=100)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-20_000:]
    summary = json.loads(report.read_text(encoding="utf-8"))
    operations = sum(len(set(item) - {"parameters"}) for item in _document()["paths"].values())
    assert summary["complete"], text[-20_000:]
    assert summary["failures"] == [], text[-20_000:]
    assert summary["errors"] == [], text[-20_000:]
    # Schemathesis leaves out the one operation that serves the document it was loaded from.
    tested = operations - 1
    assert summary["operations"] == {
        "total": tested,
        "selected": tested,
        "tested": tested,
        "errored": 0,
        "skipped": 0,
        "skip_reasons": [],
    }
    assert {phase["status"] for phase in summary["phases"].values()} == {"success"}
    # The run got past validation where it matters: messages accepted, event streams read, callbacks recorded.
    reached = summary["valid_rates"]
    for operation in (
        "POST /v1/messages",
        "GET /v1/events",
        "GET /callbacks/ubill",
        "DELETE /v1/messages/{id}",
    ):
        assert reached[operation]["fuzzing"]["accepted"] > 0, (operation, reached[operation])
    # Verifications were started (examples, coverage or fuzzing) and their links followed: a resend of a real
    # one is answered (200, or 409/429 by its rules), not 404.
    started = reached["POST /v1/verifications"].values()
    assert sum(phase["accepted"] for phase in started) > 0, reached["POST /v1/verifications"]
    resent = reached["POST /v1/verifications/{id}/resend"].values()
    assert sum(phase["accepted"] + phase["conflicts"] for phase in resent) > 0
