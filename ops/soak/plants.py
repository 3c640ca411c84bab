"""Planted faults: tampering from outside the product that the checker must catch (``--plant KIND``).

They prove the checker can fail: ``duplicate`` sends an acknowledged number straight to uBill a second time;
``lost`` deletes a freshly accepted scheduled message (every key naming its id) before it is due;
``false-delivered`` hides a delivered number from the checker's view of uBill; ``extra-event`` appends a copy
of a real event to its stream; ``contract-500`` writes a fabricated 500 answer into the journal.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ops.soak.collect import Collected, stream_key
from ops.soak.config import TOKENS, UBILL_KEY
from ops.soak.records import Answer, Attempt, Journal, SendRecord
from ops.soak.stage import Stage

__all__ = ["after_settle", "at_start", "tamper_collected"]

LOST_NUMBER = "995599999990"  # outside every generated range, so nothing else ever sends to it
DUPLICATE_TEXT = "planted duplicate"


async def at_start(plants: tuple[str, ...], stage: Stage, journal: Journal) -> None:
    if "lost" in plants:
        await _plant_lost(stage, journal)
    if "contract-500" in plants:
        journal.answers.append(Answer("planted", time.time(), 500, note="a fabricated 500 (planted)"))


async def after_settle(plants: tuple[str, ...], stage: Stage, journal: Journal) -> None:
    if "duplicate" in plants:
        await _plant_duplicate(stage, journal)
    if "extra-event" in plants:
        await _plant_extra_event(stage, journal)


def tamper_collected(plants: tuple[str, ...], journal: Journal, collected: Collected) -> None:
    if "false-delivered" not in plants:
        return
    for message in collected.messages.values():
        for recipient in (message or {}).get("recipients", []):
            if recipient.get("status") == "delivered" and recipient["number"] not in journal.planted_numbers:
                collected.hidden_numbers.add(str(recipient["number"]))
                journal.planted_numbers.add(str(recipient["number"]))
                journal.notes.append(
                    f"planted: uBill's record of {recipient['number']} hidden from the checker"
                )
                return
    journal.notes.append("planted false-delivered: no delivered recipient to hide")


async def _plant_lost(stage: Stage, journal: Journal) -> None:
    """Accept a scheduled message, then delete every key that names it before it is due."""
    send_at = datetime.fromtimestamp(time.time() + 4, UTC).isoformat(timespec="milliseconds")
    record = SendRecord(seq=0, kind="scheduled", client="soak-a", numbers=[LOST_NUMBER], retry="once")
    started = time.time()
    async with stage.http.post(
        f"{stage.balancer.url}/v1/messages",
        json={"to": [LOST_NUMBER], "text": "planted lost", "send_at": send_at},
        headers={"Authorization": f"Bearer {TOKENS['soak-a']}", "Idempotency-Key": uuid.uuid4().hex},
    ) as response:
        body: dict[str, Any] = await response.json(content_type=None)
        attempt = Attempt(started, time.time(), response.status, message_id=body.get("id"))
    record.attempts.append(attempt)
    record.send_at = time.time() + 4
    journal.sends.append(record)
    if attempt.message_id is None:
        journal.notes.append(f"planted lost: the gateway answered {attempt.status}, nothing to delete")
        return
    node = await stage.topology.primary()
    async with node.admin() as client:
        doomed = [key async for key in client.scan_iter(match=f"*{attempt.message_id}*", count=1000)]
        if doomed:
            await client.delete(*doomed)
    journal.notes.append(f"planted: deleted {len(doomed)} key(s) of accepted {attempt.message_id}")


async def _plant_duplicate(stage: Stage, journal: Journal) -> None:
    """Send one acknowledged, already-sent number to uBill again, straight to its API."""
    sends = await stage.sandbox_get("/_sandbox/sends")
    received = {n for record in sends["sends"] for n in record["numbers"]}
    for send in journal.sends:
        if send.accepted and send.retry != "unkeyed":
            number = next((n for n in send.numbers if n in received), None)
            if number is None:
                continue
            params = {"key": UBILL_KEY, "brandID": "1", "numbers": number, "text": DUPLICATE_TEXT}
            async with stage.http.get(
                f"{stage.sandbox_url}/v1/sms/send", params=params, timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                await response.read()
            journal.planted_numbers.add(number)
            journal.notes.append(f"planted: {number} (send #{send.seq}) sent to uBill a second time")
            return
    journal.notes.append("planted duplicate: no acknowledged number at uBill to send again")


async def _plant_extra_event(stage: Stage, journal: Journal) -> None:
    """Append a copy of the newest real event to its stream: the same status twice for one recipient."""
    node = await stage.topology.primary()
    async with node.admin() as client:
        for name in TOKENS:
            newest = await client.xrevrange(stream_key(name), count=1)
            if newest:
                await client.xadd(stream_key(name), {"event": newest[0][1]["event"]})
                journal.notes.append(
                    f"planted: a copy of event {newest[0][0]} appended to {stream_key(name)}"
                )
                return
    journal.notes.append("planted extra-event: no event to copy")
