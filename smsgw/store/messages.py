"""The gateway's side of the store: accept a message (one round trip whatever the options), read, cancel.

Accept decides the client's rate, the Idempotency-Key and the write in one script (``lua/accept.lua``), shared
by concurrent requests through pipelines of up to 16 calls (``batching.py``). When its answer is lost (a
timeout, a cut connection: Redis may have run it or not), ``accept`` finds out: the script refuses to write
after a deadline on Redis's clock, so once Redis's clock is past it, whether the message exists is final
(``lua/findout.lua``). Only when even that cannot be asked does the caller hear "outcome unknown".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.exceptions
from redis.asyncio import Redis

from smsgw.clock import iso, now_ms
from smsgw.errors import NothingAccepted, StoreOutcomeUnknown, StoreUnavailable
from smsgw.store import keys
from smsgw.store.batching import ScriptBatcher, wait_for
from smsgw.store.connection import is_unavailable, maybe_sent, outage_name, translated
from smsgw.store.records import MessageView, NewMessage
from smsgw.store.scripts import Scripts

__all__ = [
    "Accepted",
    "ClientLimit",
    "Exists",
    "Idempotency",
    "Limited",
    "Messages",
    "Mismatch",
    "Replayed",
]

DEADLINE_MARGIN_MS = 100  # the answer's trip back, and what a clock-offset reading can be off by
CLOCK_SYNC_INTERVAL = 60.0


@dataclass(frozen=True)
class ClientLimit:
    """A client's request rate, checked in the same script as the write."""

    client: str
    rate: float
    burst: int


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key of one client and endpoint, and the canonical hash of the request it came with."""

    client: str
    scope: str
    key_hash: str
    body_hash: str

    @property
    def key(self) -> str:
        return keys.idempotency(self.client, self.scope, self.key_hash)


@dataclass(frozen=True)
class Accepted:
    view: MessageView
    facade_id: int | None


@dataclass(frozen=True)
class Replayed:
    """The request was made before (same Idempotency-Key and body, or a facade retry): its message now."""

    message_id: str
    status_code: int
    view: MessageView | None
    facade_id: int | None


@dataclass(frozen=True)
class Limited:
    retry_after_ms: int


@dataclass(frozen=True)
class Mismatch:
    """The Idempotency-Key was used with another body."""


@dataclass(frozen=True)
class Exists:
    """A fixed message id (a dead-letter replay) that exists already."""


AcceptOutcome = Accepted | Replayed | Limited | Mismatch | Exists


@dataclass(frozen=True)
class _TooLate:
    """The script ran after the gateway's deadline and wrote nothing (its reply came nevertheless)."""


class Messages:
    def __init__(
        self,
        redis: Redis,
        scripts: Scripts,
        *,
        timeout: float,
        wait_replicas: int = 0,
        wait_timeout: float = 0,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        # Opt-in HA: a 202 only once this many replicas have the message (WAIT), else "outcome unknown".
        self._wait_replicas = wait_replicas
        wait = wait_for(wait_replicas, wait_timeout)
        self._accept = ScriptBatcher(redis, scripts.accept, wait=wait)
        self._touch = ScriptBatcher(redis, scripts.touch, wait=wait) if wait else None
        self._facade_answered = ScriptBatcher(redis, scripts.facade_answered)  # one per facade send, batched
        self._timeout_ms = int(timeout * 1000)
        self._clock_offset_ms = 0  # Redis's clock minus ours: deadlines are checked on Redis's clock

    async def sync_clock(self) -> None:
        """Learn how far Redis's clock is from ours (accept deadlines are compared on Redis's)."""
        with translated():
            before = time.time()
            seconds, micros = await self._redis.time()
            after = time.time()
        self._clock_offset_ms = int((seconds + micros / 1e6 - (before + after) / 2) * 1000)

    async def keep_clock(self) -> None:
        while True:
            await asyncio.sleep(CLOCK_SYNC_INTERVAL)
            try:
                await self.sync_clock()
            except StoreUnavailable:
                continue

    async def accept(
        self,
        message: NewMessage,
        *,
        ttl_s: int,
        limit: ClientLimit | None = None,
        idempotency: Idempotency | None = None,
        facade: bool = False,
        facade_retry: str | None = None,
        check_exists: bool = False,
    ) -> AcceptOutcome:
        """Write ``message`` unless the rate, the key or the deadline says otherwise (``lua/accept.lua``)."""
        deadline = now_ms() + self._clock_offset_ms + self._timeout_ms - DEADLINE_MARGIN_MS
        fields = message.fields()
        body: dict[str, Any] = {
            "id": message.id,
            "lane": message.lane,
            "ttl": ttl_s,
            "deadline": deadline,
            "f": [item for pair in fields.items() for item in pair],
            "t": message.timers(),
            "facade": facade,
            "exists": check_exists,
            "w": bool(self._wait_replicas),
        }
        if limit is not None:
            body["rate"] = [keys.client_rate(limit.client), limit.rate, limit.burst]
        if idempotency is not None:
            record = f"done|{idempotency.body_hash}|{message.id}|202"
            body["idem"] = [idempotency.key, idempotency.body_hash, record]
        if facade_retry is not None:
            body["retry"] = facade_retry
        try:
            raw, replicas = await self._accept([], [orjson.dumps(body)])
        except redis.exceptions.RedisError as exc:
            if not is_unavailable(exc):
                raise
            if not maybe_sent(exc):
                raise NothingAccepted(f"Redis is unavailable ({outage_name(exc)})") from None
            return await self._find_out(message, deadline, idempotency, facade_retry)
        outcome = _outcome(message, fields, raw)
        if isinstance(outcome, _TooLate):
            return await self._nothing_new(message, deadline, idempotency, facade_retry)
        stored = isinstance(outcome, Accepted | Replayed)
        if stored and replicas is not None and replicas < self._wait_replicas:
            # Stored on the primary, not (yet) on enough replicas: a failover now could lose it. A replay
            # counts too: the script touched what it replayed, so this WAIT covered the original's write.
            raise StoreOutcomeUnknown(
                f"stored, but only {replicas} of {self._wait_replicas} replicas confirmed it in time",
                message.id,
                deadline,
            )
        return outcome

    async def _find_out(
        self, message: NewMessage, deadline: int, idempotency: Idempotency | None, facade_retry: str | None
    ) -> Accepted | Replayed | Mismatch:
        """Whether an accept whose answer was lost wrote the message: ``Accepted``; what it would have
        replayed when it wrote nothing because the request was made before (its key, its facade fingerprint);
        ``NothingAccepted`` when nothing was and now ever will be stored; ``StoreOutcomeUnknown`` when Redis
        cannot be asked in time."""
        found = await self.resolve(message.id, deadline, patience=self._timeout_ms / 1000)
        if found is None:
            raise StoreOutcomeUnknown(
                "Redis did not answer; whether the message was stored is not known", message.id, deadline
            )
        outcome: Accepted | Replayed | Mismatch
        if found is False:
            earlier = await self._earlier(message.id, deadline, idempotency, facade_retry)
            if earlier is None and self._wait_replicas:
                # With replicas a failover may have come between the write and this question: absent on
                # today's primary does not prove the script never ran on yesterday's.
                raise StoreOutcomeUnknown(
                    "not on the current primary; a failover may have moved it", message.id, deadline
                )
            if earlier is None:
                raise NothingAccepted("Redis answered too late")
            outcome = earlier
        else:
            outcome = Accepted(message.view(), found or None)
        if self._wait_replicas and not isinstance(outcome, Mismatch):  # replication cannot be confirmed now
            raise StoreOutcomeUnknown("stored, replication not confirmed", message.id, deadline)
        return outcome

    async def _nothing_new(
        self, message: NewMessage, deadline: int, idempotency: Idempotency | None, facade_retry: str | None
    ) -> Replayed | Mismatch:
        """This request stored nothing: the earlier request it repeats, if any, else ``NothingAccepted``."""
        earlier = await self._earlier(message.id, deadline, idempotency, facade_retry)
        if earlier is None:
            raise NothingAccepted("Redis answered too late")
        return earlier

    async def _earlier(
        self, message_id: str, deadline: int, idempotency: Idempotency | None, facade_retry: str | None
    ) -> Replayed | Mismatch | None:
        """The earlier request a repeat that stored nothing was answered with (its reply lost): a repeat told
        "nothing was accepted" would believe the original lost too and send it again."""
        try:
            if idempotency is not None:
                return await self.replay(idempotency)
            if facade_retry is not None:
                with translated():
                    mark = await self._redis.get(facade_retry)
                if mark is not None:
                    original, facade_id = _parse_mark(str(mark))
                    await self.replicated(facade_retry, original)  # with WAIT: durable before "sent"
                    return Replayed(original, 200, None, facade_id)
        except StoreUnavailable:
            raise StoreOutcomeUnknown(
                "nothing new was stored; whether an earlier request was is not known", message_id, deadline
            ) from None
        return None

    async def resolve(self, message_id: str, deadline: int, *, patience: float) -> int | bool | None:
        """Ask, for up to ``patience`` seconds, whether an accept with ``deadline`` stored ``message_id``:
        its facade smsID (0 if none) when it did, False when it did not, None when Redis could not say."""
        give_up = time.monotonic() + patience
        while time.monotonic() < give_up:
            try:
                answer = await self._scripts.findout(args=[message_id, deadline])
            except redis.exceptions.RedisError as exc:
                if not is_unavailable(exc):
                    raise
                await asyncio.sleep(0.05)
                continue
            if answer[0] == "stored":
                return int(answer[1]) if answer[1] else 0
            if answer[0] == "absent":
                return False
            await asyncio.sleep(min(1.0, int(answer[1]) / 1000))
        return None

    async def exists(self, message_id: str) -> bool:
        with translated():
            return bool(await self._redis.exists(keys.message(message_id)))

    async def view(self, message_id: str) -> MessageView | None:
        with translated():
            fields: dict[str, str] = await self._redis.hgetall(keys.message(message_id))  # type: ignore[misc]
        return MessageView.parse(message_id, fields) if fields else None

    async def replay(self, idempotency: Idempotency) -> Replayed | Mismatch | None:
        """What an Idempotency-Key recorded, without writing (a retry whose body no longer validates)."""
        with translated():
            record = await self._redis.get(idempotency.key)
            if record is None:
                return None
            _state, body_hash, message_id, code, *rest = str(record).split("|")
            if body_hash != idempotency.body_hash:
                return Mismatch()
            view = await self.view(message_id)
        facade_id = int(rest[0]) if rest and rest[0] else None
        await self.replicated(idempotency.key, message_id)
        return Replayed(message_id, int(code), view, facade_id)

    async def replicated(self, key: str, message_id: str, done: str = "stored") -> None:
        """With WAIT configured, a replay answers as durable only once the replicas have what it replays (the
        original was stored by another request, maybe answered "outcome unknown" for want of them): touching
        ``key`` (a write) makes the WAIT cover every earlier write, whoever made it."""
        if self._touch is None:
            return
        with translated():
            _ttl, replicas = await self._touch([key], [])
        if replicas is None or replicas < self._wait_replicas:
            raise StoreOutcomeUnknown(
                f"{done}, but only {replicas or 0} of {self._wait_replicas} replicas confirmed it in time",
                message_id,
                now_ms(),
            )

    async def cancel(self, message_id: str, client: str) -> int | None:
        """Cancel what was not handed to uBill; the number cancelled, or None when not this client's. With
        WAIT configured, answered only once the replicas have the cancel (or an earlier one this repeats): a
        failover that lost it would send what the caller was told is cancelled."""
        now = now_ms()
        with translated():
            result = await self._scripts.cancel(args=[message_id, client, now, iso(now)])
        if result[0] != "ok":
            return None
        await self.replicated(keys.message(message_id), message_id, "cancelled")
        return int(result[1])

    async def facade_message(self, sms_id: str) -> MessageView | None:
        """The message behind one of the facade's integer smsIDs."""
        with translated():
            message_id = await self._redis.get(keys.facade(sms_id))
        return await self.view(str(message_id)) if message_id else None

    async def facade_answered(self, retry_key: str, message_id: str, facade_id: int | None) -> bool:
        """A facade call was answered for certain: an identical call from now on is a new send, not its
        retry (``lua/accept.lua``). False when Redis could not be told: the mark then lives out its TTL."""
        try:
            with translated():
                await self._facade_answered([retry_key], [_mark(message_id, facade_id)])
        except StoreUnavailable:
            return False
        return True

    async def client_allowed(self, limit: ClientLimit) -> int:
        """0 when the client may make one more call now, else the ms to wait (calls other than sends)."""
        with translated():
            wait = await self._scripts.client_rate(
                args=[keys.client_rate(limit.client), limit.rate, limit.burst]
            )
        return int(wait)

    async def ping(self) -> None:
        with translated():
            await self._redis.ping()


def _mark(message_id: str, facade_id: int | None) -> str:
    """A facade call's fingerprint value: what it stored (``lua/accept.lua`` writes the same)."""
    return f"{message_id}|{facade_id or ''}"


def _parse_mark(mark: str) -> tuple[str, int | None]:
    message_id, facade_id = mark.split("|", 1)
    return message_id, int(facade_id) if facade_id else None


def _outcome(message: NewMessage, fields: dict[str, str], raw: list[Any]) -> AcceptOutcome | _TooLate:
    code = int(raw[0])
    if code == 1:
        return Accepted(message.view(fields), int(raw[1]) if raw[1] else None)
    if code == 2:
        stored = dict(zip(raw[4::2], raw[5::2], strict=True))
        view = MessageView.parse(str(raw[1]), stored) if stored else None
        return Replayed(str(raw[1]), int(raw[2]), view, int(raw[3]) if raw[3] else None)
    if code == 3:
        message_id = str(raw[1])
        return Replayed(message_id, 200, None, int(raw[2]) if raw[2] else None)
    if code == -1:
        return _TooLate()
    if code == -2:
        return Limited(int(raw[1]))
    if code == -3:
        return Mismatch()
    return Exists()
