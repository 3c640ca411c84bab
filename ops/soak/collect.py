"""After the workload: wait for the system to settle, then read what every side says happened.

Through public interfaces only: the sandbox's ``/_sandbox/sends`` and ``/_sandbox/callbacks`` (what uBill got
and how our callback endpoint answered), every message through ``GET /v1/messages/{id}``, facade messages
through ``GET /v1/sms/report/{smsID}``, and the documented event streams ``smsgw:stream:{client}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from ops.soak.config import TOKENS
from ops.soak.observe import key_audit
from ops.soak.records import Answer, Journal
from ops.soak.stage import Stage

__all__ = ["MOVING", "Collected", "collect", "settle", "stream_key"]

MOVING: Final = frozenset({"queued", "scheduled", "dispatching", "submitted", "sent", "pending"})
_READERS: Final = 16
_STREAM_BATCH: Final = 5000


def stream_key(client: str) -> str:
    """The contract's per-client event stream."""
    return f"smsgw:stream:{client}"


@dataclass
class Collected:
    ubill_sends: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # each with "_id" (stream id)
    messages: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: 404
    unreadable: dict[str, str] = field(default_factory=dict)  # id -> why it could not be read
    reports: dict[str, dict[str, int]] = field(default_factory=dict)  # facade smsID -> number -> code
    key_audit: dict[str, Any] = field(default_factory=dict)
    hidden_numbers: set[str] = field(
        default_factory=set
    )  # planted: numbers the checker must not see at uBill


class Reader:
    """GETs with a client's token, each answer written to the journal (a 500 here breaks the contract too)."""

    def __init__(self, stage: Stage, journal: Journal) -> None:
        self.stage = stage
        self.journal = journal
        self._slots = asyncio.Semaphore(_READERS)

    async def get(
        self, route: str, path: str, client: str, params: dict[str, str] | None = None
    ) -> tuple[int | None, Any]:
        headers = {"Authorization": f"Bearer {TOKENS[client]}"}
        for attempt in range(5):
            async with self._slots:
                answer = Answer(route, time.time(), None)
                body: Any = None
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, ValueError):
                    async with self.stage.http.get(
                        self.stage.balancer.url + path,
                        headers=headers,
                        params=params,
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as response:
                        answer.status = response.status
                        raw = await response.read()
                        body = json.loads(raw) if raw else None
                        if response.status >= 400 and isinstance(body, dict):
                            answer.problem = body.get("type") or body.get("message")
                answer.at = time.time()
                self.journal.answers.append(answer)
            if answer.status in (200, 404):
                return answer.status, body
            await asyncio.sleep(0.5 * (attempt + 1))
        return answer.status, body


def message_owners(journal: Journal) -> dict[str, str]:
    """Message id -> client, for every id a 202 named."""
    owners: dict[str, str] = {}
    for send in journal.sends:
        for attempt in send.attempts:
            if attempt.message_id:
                owners[attempt.message_id] = send.client
    return owners


def facade_ids(journal: Journal) -> dict[str, str]:
    ids: dict[str, str] = {}
    for send in journal.sends:
        for attempt in send.attempts:
            if attempt.facade_id and attempt.accepted:
                ids[attempt.facade_id] = send.client
    return ids


async def _read_messages(reader: Reader, owners: dict[str, str], out: Collected) -> None:
    async def one(message_id: str, client: str) -> None:
        status, body = await reader.get("GET /v1/messages/{id}", f"/v1/messages/{message_id}", client)
        if status == 200 and isinstance(body, dict):
            out.messages[message_id] = body
        elif status == 404:
            out.messages[message_id] = None
        else:
            out.unreadable[message_id] = f"HTTP {status}"

    await asyncio.gather(*(one(m, c) for m, c in owners.items()))


async def _read_reports(reader: Reader, ids: dict[str, str], out: Collected) -> None:
    async def one(sms_id: str, client: str) -> None:
        status, body = await reader.get(
            "GET /v1/sms/report/{smsID}", f"/v1/sms/report/{sms_id}", client, {"key": TOKENS[client]}
        )
        if status == 200 and isinstance(body, dict) and body.get("statusID") == 0:
            out.reports[sms_id] = {str(r["number"]): int(r["statusID"]) for r in body.get("result", [])}

    await asyncio.gather(*(one(s, c) for s, c in ids.items()))


async def read_events(stage: Stage, clients: Iterable[str]) -> list[dict[str, Any]]:
    node = await stage.topology.primary()
    events: list[dict[str, Any]] = []
    async with node.admin() as client:
        client.connection_pool.connection_kwargs["socket_timeout"] = 30
        for name in clients:
            start = "-"
            while True:
                batch = await client.xrange(stream_key(name), min=start, count=_STREAM_BATCH)
                for entry_id, fields in batch:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        event = json.loads(fields["event"])
                        event["_id"] = entry_id
                        events.append(event)
                if len(batch) < _STREAM_BATCH:
                    break
                start = "(" + batch[-1][0]
    return events


async def settle(stage: Stage, journal: Journal, limit: float, minimum: float = 6.0) -> float:
    """Wait until no known recipient is still moving (or ``limit``); returns the seconds waited.

    Known: every message a 202 named, and every message of ours the event streams name (facade messages,
    and messages stored although the answer was not a 202)."""
    reader = Reader(stage, Journal(journal.seed))  # settling reads are not part of the verdict
    started = time.monotonic()
    pending = message_owners(journal)
    with contextlib.suppress(Exception):
        for event in await read_events(stage, TOKENS):
            if event.get("message_id") and event.get("client") in TOKENS:
                pending.setdefault(str(event["message_id"]), str(event["client"]))
    while True:
        await asyncio.sleep(2.0)
        probe = Collected()
        await _read_messages(reader, pending, probe)
        pending = {
            m: c for m, c in pending.items() if m in probe.unreadable or _moving(probe.messages.get(m))
        }
        waited = time.monotonic() - started
        if (not pending and waited >= minimum) or waited >= limit:
            return waited


def _moving(message: dict[str, Any] | None) -> bool:
    return message is not None and any(r.get("status") in MOVING for r in message.get("recipients", []))


async def collect(stage: Stage, journal: Journal) -> Collected:
    out = Collected()
    out.ubill_sends = (await stage.sandbox_get("/_sandbox/sends"))["sends"]
    out.callbacks = (await stage.sandbox_get("/_sandbox/callbacks"))["callbacks"]
    out.events = await read_events(stage, TOKENS)
    reader = Reader(stage, journal)
    owners = message_owners(journal)
    for event in out.events:  # messages stored without a 202 (answered 503, timed out) show up here
        if event.get("message_id") and event.get("client") in TOKENS:
            owners.setdefault(str(event["message_id"]), str(event["client"]))
    await _read_messages(reader, owners, out)
    await _read_reports(reader, facade_ids(journal), out)
    out.key_audit = await key_audit(stage.topology)
    return out
