"""Every Redis name the project uses, and the TTLs that keep Redis from growing without bound.

Data model (one message = one hash; everything a Lua script touches for a message lives in it):

    smsgw:msg:{id}              hash   meta fields (c, p, b, t, ref, seg, enc, ca, sa, ea, sl, n, u, fid),
                                       r:{number} -> "status|updated_ms|sms_id|status_id|error" per recipient,
                                       u:{k} -> "state|owner|sms_id|tries|reason" per dispatch unit,
                                       n:{k} -> "number,number,..." the unit's numbers
    arq:job:{id}:{k}            string arq's job record (JSON): dispatch(message_id, k, n)
    smsgw:lane:{lane}           zset   arq's queue for one lane, scored by due time (ms)
    smsgw:wake:{lane}           list   nudges that end an idle worker's blocking wait (capped)
    smsgw:sms:{smsID}           string "{id}:{k}": which unit uBill's smsID belongs to
    smsgw:orphan:{smsID}        list   callbacks that arrived before their smsID was recorded
    smsgw:orphans               zset   smsIDs with kept orphan callbacks, scored by expiry (ms)
    smsgw:unsettled:{number}    set    "{id}:{k}" units whose outcome is unknown and include this number
    smsgw:awaiting              zset   "{id}:{k}" acknowledged units, scored by ack time, for reconciliation
    smsgw:dead                  zset   "{id}:{k}" dead letters, scored by time
    smsgw:stream:{client}       stream status events of one client (trimmed by age)
    smsgw:idem:{client}:{hash}  string idempotency record of POST /v1/messages
    smsgw:facade:seq            string counter behind the integer smsIDs of the uBill facade
    smsgw:facade:{n}            string facade smsID -> message id
    smsgw:rate:{window}         hash   uBill dispatch counters of one second (all workers)
    smsgw:demand:{lane}         string set while a lane waits for uBill capacity
    smsgw:client-rate:{client}  string GCRA state of one client's request limit
    smsgw:balance               string last uBill balance reading (JSON)
    smsgw:lock:{name}           string leader lock of a periodic task (balance poll, reconciliation)

Pub/sub channels ``smsgw:events`` and ``smsgw:events:{client}`` carry the same JSON events as the streams.
"""

from __future__ import annotations

__all__ = [
    "EVENTS_CHANNEL",
    "client_channel",
    "client_stream",
    "idempotency",
    "job",
    "lane_queue",
    "message",
    "wake",
]

PREFIX = "smsgw:"
EVENTS_CHANNEL = PREFIX + "events"
ORPHANS = PREFIX + "orphans"
AWAITING = PREFIX + "awaiting"
DEAD = PREFIX + "dead"
FACADE_SEQ = PREFIX + "facade:seq"
BALANCE = PREFIX + "balance"
# arq keeps its own prefixes (arq:job:, arq:in-progress:, arq:retry:, arq:result:); they are constants in arq.
ARQ_JOB_PREFIX = "arq:job:"
ARQ_IN_PROGRESS_PREFIX = "arq:in-progress:"

IDEMPOTENCY_TTL = 86_400  # the contract's 24 h
IDEMPOTENCY_PENDING_TTL = 60  # a crashed request frees its key after a minute
SMS_ID_TTL = 7 * 86_400  # callbacks and reports for an smsID come within days
UNSETTLED_TTL = 2 * 86_400  # unknown outcomes may still be settled by a late callback
WAKE_CAP = 64  # nudges kept per lane: enough to wake every idle worker, never a growing list
RATE_WINDOW_TTL_MS = 3_000  # a one-second window's counters outlive it briefly
DEMAND_TTL_MS = 1_000  # a lane that waited within the last second still claims its share


def message(message_id: str) -> str:
    return f"{PREFIX}msg:{message_id}"


def lane_queue(lane: str) -> str:
    return f"{PREFIX}lane:{lane}"


def wake(lane: str) -> str:
    return f"{PREFIX}wake:{lane}"


def job(unit_id: str) -> str:
    return ARQ_JOB_PREFIX + unit_id


def in_progress(unit_id: str) -> str:
    return ARQ_IN_PROGRESS_PREFIX + unit_id


def unit_id(message_id: str, k: int) -> str:
    return f"{message_id}:{k}"


def sms(sms_id: str) -> str:
    return f"{PREFIX}sms:{sms_id}"


def orphan(sms_id: str) -> str:
    return f"{PREFIX}orphan:{sms_id}"


def client_channel(client: str) -> str:
    return f"{EVENTS_CHANNEL}:{client}"


def client_stream(client: str) -> str:
    return f"{PREFIX}stream:{client}"


def idempotency(client: str, key_hash: str) -> str:
    return f"{PREFIX}idem:{client}:{key_hash}"


def facade(sms_id: int | str) -> str:
    return f"{PREFIX}facade:{sms_id}"


def demand(lane: str) -> str:
    return f"{PREFIX}demand:{lane}"


def client_rate(client: str) -> str:
    return f"{PREFIX}client-rate:{client}"


def lock(name: str) -> str:
    return f"{PREFIX}lock:{name}"
