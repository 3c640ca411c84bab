"""The workload: a seeded plan of sends and cancels, and the callers that carry it out through the gateways.

Each logical send gets fresh numbers (a number is never in two logical sends), so what the sandbox received
per number measures duplicates exactly. Callers behave like real ones: ``keyed`` callers retry 503s, 429s,
timeouts and cut connections with the same ``Idempotency-Key`` (must never duplicate); ``unkeyed`` callers
retry without one (a second message after an ambiguous answer is then the caller's choice, counted apart);
``once`` callers never retry. Every request and answer is written to the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp

from ops.bench.numbers import NumberSource
from ops.soak.config import TOKENS, Options
from ops.soak.records import Answer, Attempt, Journal, SendRecord

__all__ = ["Planned", "Workload", "build_plan", "read_answer"]

MAX_ATTEMPTS: Final = 6
CONCURRENCY: Final = 48
KINDS: Final = {
    "otp": 0.2,
    "transactional": 0.28,
    "bulk": 0.08,
    "scheduled": 0.1,
    "facade-get": 0.1,
    "facade-post": 0.1,
    "cancel": 0.14,
}
RETRIES: Final = {"keyed": 0.5, "unkeyed": 0.25, "once": 0.25}
RETRYABLE: Final = frozenset({409, 429, 500, 502, 503, 504})
_RECENT: Final = 200


@dataclass(frozen=True)
class Planned:
    at: float  # seconds after the workload starts
    kind: str
    client: str
    numbers: tuple[str, ...] = ()
    retry: str = "once"
    timeout: float = 3.0
    send_in: float = 0.0  # scheduled: send_at this far after the first attempt
    text: str = ""
    seq: int = 0  # the send's number in the plan (cancels: 0)


def _count(kind: str, rng: random.Random, options: Options) -> int:
    if kind == "bulk":
        return rng.randint(1, options.max_bulk)
    if kind in ("otp", "facade-get", "facade-post"):
        return rng.randint(1, 3)
    if kind == "scheduled":
        return rng.randint(1, 10)
    return rng.randint(1, 5)


def build_plan(options: Options) -> list[Planned]:
    """The whole workload, in order; the same seed and options give the same plan (and the same numbers)."""
    rng = random.Random(f"workload-{options.seed}")
    numbers = NumberSource()
    plan: list[Planned] = []
    at = 0.0
    seq = 0
    while True:
        at += rng.expovariate(options.send_rate)
        if at >= options.duration:
            return plan
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        client = rng.choice(sorted(TOKENS))
        if kind == "cancel":
            plan.append(Planned(at, kind, client))
            continue
        seq += 1
        retry = rng.choices(list(RETRIES), weights=list(RETRIES.values()))[0]
        if kind.startswith("facade") and retry == "keyed":
            retry = "unkeyed"  # uBill's API has no idempotency key
        timeout = rng.uniform(0.3, 0.9) if rng.random() < 0.2 else 3.0
        code = rng.randint(1000, 9999)
        plan.append(
            Planned(
                at,
                kind,
                client,
                tuple(numbers.take(_count(kind, rng, options))),
                retry,
                round(timeout, 2),
                round(rng.uniform(3.0, 8.0), 2) if kind == "scheduled" else 0.0,
                f"Soak #{seq}: {'your code is ' if kind == 'otp' else 'notice '}{code}",
                seq,
            )
        )


def read_answer(status: int, body: bytes, headers: Any) -> dict[str, Any]:
    """The parts of an answer the checker needs: problem type, ids, statusID, Retry-After."""
    out: dict[str, Any] = {"retry_after": headers.get("Retry-After")}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return out
    if not isinstance(data, dict):
        return out
    if "statusID" in data:
        out["status_id"] = data.get("statusID")
        out["facade_id"] = str(data["smsID"]) if data.get("smsID") is not None else None
        out["problem"] = str(data.get("message", ""))
    else:
        out["problem"] = data.get("type") if status >= 400 else None
        out["message_id"] = data.get("id") if status == 202 else None
    return out


class Workload:
    """Runs a plan against ``base_url`` (the balancer in front of the gateways), writing to ``journal``."""

    def __init__(self, plan: list[Planned], base_url: str, journal: Journal) -> None:
        self.plan = plan
        self.base_url = base_url
        self.journal = journal
        self.accepted: deque[tuple[str, str, float | None]] = deque(maxlen=_RECENT)  # id, client, send_at
        self.in_flight: deque[tuple[float, str]] = deque(maxlen=_RECENT)  # (accepted at, number)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._rng = random.Random(f"callers-{journal.seed}")

    def recent_numbers(self, within: float = 3.0) -> list[str]:
        """Numbers accepted in the last ``within`` seconds: likely still on their way to uBill."""
        now = time.time()
        return [n for at, n in self.in_flight if now - at <= within]

    async def run(self, start: float) -> None:
        """Carry out the plan; ``start`` is the ``time.monotonic()`` its offsets count from."""
        connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._session = session
            self.journal.workload_started = time.time()
            for item in self.plan:
                wait = start + item.at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._slots.acquire()
                task = asyncio.create_task(self._one(item))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if self._tasks:
                await asyncio.wait(self._tasks)
            self.journal.workload_ended = time.time()
        self._session = None

    async def _one(self, item: Planned) -> None:
        try:
            if item.kind == "cancel":
                await self._cancel(item)
            else:
                await self._send(item)
        finally:
            self._slots.release()

    # -- sends ---------------------------------------------------------------------------------------------
    async def _send(self, item: Planned) -> None:
        record = SendRecord(
            seq=item.seq,
            kind=item.kind,
            client=item.client,
            numbers=list(item.numbers),
            retry=item.retry,
            idempotency_key=f"soak-{uuid.uuid4().hex}" if item.retry == "keyed" else None,
        )
        self.journal.sends.append(record)
        if item.kind == "scheduled":
            record.send_at = round(time.time() + item.send_in, 3)
        for attempt_no in range(MAX_ATTEMPTS):
            attempt = await self._attempt(item, record)
            record.attempts.append(attempt)
            if attempt.accepted:
                self._remember(record, attempt)
                return
            if record.retry == "once" or attempt_no == MAX_ATTEMPTS - 1:
                return
            if attempt.status is not None and attempt.status not in RETRYABLE:
                return
            await asyncio.sleep(self._backoff(attempt, attempt_no))

    def _backoff(self, attempt: Attempt, attempt_no: int) -> float:
        hinted = attempt.retry_after
        base = float(hinted) if hinted and hinted.isdigit() else 0.2 * 2**attempt_no
        return min(2.0, base) * self._rng.uniform(0.5, 1.0)

    def _remember(self, record: SendRecord, attempt: Attempt) -> None:
        now = time.time()
        if attempt.message_id:
            self.accepted.append((attempt.message_id, record.client, record.send_at))
        for number in record.numbers:
            self.in_flight.append((now, number))

    async def _attempt(self, item: Planned, record: SendRecord) -> Attempt:
        assert self._session is not None
        token = TOKENS[item.client]
        started = time.time()
        attempt = Attempt(started=started, ended=started)
        timeout = aiohttp.ClientTimeout(total=item.timeout)
        try:
            if item.kind.startswith("facade"):
                request = self._facade_request(item, token, timeout)
            else:
                request = self._session.post(
                    f"{self.base_url}/v1/messages",
                    json=self._body(item, record),
                    headers=self._headers(token, record),
                    timeout=timeout,
                )
            async with request as response:
                body = await response.read()
                attempt.status = response.status
                parsed = read_answer(response.status, body, response.headers)
        except TimeoutError:
            attempt.error = "timeout"
            parsed = {}
        except (aiohttp.ClientError, OSError) as exc:
            attempt.error = type(exc).__name__
            parsed = {}
        attempt.ended = time.time()
        attempt.problem = parsed.get("problem")
        attempt.message_id = parsed.get("message_id")
        attempt.facade_id = parsed.get("facade_id")
        attempt.retry_after = parsed.get("retry_after")
        status_id = parsed.get("status_id")
        attempt.status_id = status_id if isinstance(status_id, int) else None
        return attempt

    def _headers(self, token: str, record: SendRecord) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}"}
        if record.idempotency_key:
            headers["Idempotency-Key"] = record.idempotency_key
        return headers

    @staticmethod
    def _body(item: Planned, record: SendRecord) -> dict[str, Any]:
        body: dict[str, Any] = {
            "to": list(item.numbers),
            "text": item.text,
            "reference": f"soak-{record.seq}",
        }
        if item.kind == "otp":
            body.update(priority="otp", validity=60)
        elif item.kind == "bulk":
            body["priority"] = "bulk"
        elif item.kind == "scheduled" and record.send_at is not None:
            moment = datetime.fromtimestamp(record.send_at, UTC)
            body["send_at"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return body

    def _facade_request(self, item: Planned, token: str, timeout: aiohttp.ClientTimeout) -> Any:
        assert self._session is not None
        brand = "1" if item.client == "soak-a" else "2"
        url = f"{self.base_url}/v1/sms/send"
        if item.kind == "facade-get":
            params = {"key": token, "brandID": brand, "numbers": ",".join(item.numbers), "text": item.text}
            return self._session.get(url, params=params, timeout=timeout)
        body = {"key": token, "brandID": int(brand), "numbers": list(item.numbers), "text": item.text}
        return self._session.post(url, json=body, timeout=timeout)

    # -- cancels -------------------------------------------------------------------------------------------
    async def _cancel(self, item: Planned) -> None:
        """Cancel a recent message (a scheduled one still ahead when there is one): a race with dispatch."""
        assert self._session is not None
        now = time.time()
        ahead = [a for a in self.accepted if a[2] is not None and a[2] > now + 0.5]
        pool = ahead or list(self.accepted)
        if not pool:
            return
        message_id, client, _ = self._rng.choice(pool)
        headers = {"Authorization": f"Bearer {TOKENS[client]}"}
        answer = Answer("DELETE /v1/messages/{id}", now, None, note=message_id)
        with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
            async with self._session.delete(
                f"{self.base_url}/v1/messages/{message_id}",
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=3),
            ) as response:
                answer.status = response.status
                parsed = read_answer(response.status, await response.read(), response.headers)
                answer.problem = parsed.get("problem")
                answer.retry_after = parsed.get("retry_after")
        answer.at = time.time()
        self.journal.answers.append(answer)
        if answer.status == 200:
            self.journal.cancels[message_id] = answer.at
