"""Every Redis name the project uses, and the TTLs that keep Redis from growing without bound.

The one source of key names: Python builds keys with the functions below, and the Lua scripts get the same
prefixes and TTLs through a generated prelude (``LUA_PREFIXES``, ``LUA_CONSTANTS``; see ``scripts.py``), so no
script spells a prefix. Scripts receive ids (message id, unit number, smsID, lane) and build keys from them.

Data model (one message = one hash; everything a script decides for a message lives in it):

    smsgw:msg:{id}              hash   meta (c client, p lane, b brand, t text, x text sealed, ref, seg, enc,
                                       ca created ms, sa send_at ms, ea expires ms, sl stop list, n count,
                                       u units, fid facade smsID), and per dispatch unit and recipient:
                                       u:{k} -> unit record (records.Unit), n:{k} -> "number,number,..."
                                       r:{number} -> recipient record (records.Recipient)
                                       expires at expires_at + SMSGW_MESSAGE_RETENTION
    smsgw:lane:{lane}           zset   one timer per unfinished unit, member "{id}:{k}", scored (ms) by the
                                       next moment a worker must look at it: due time, retry, running lease,
                                       reconciliation; removed when the unit is finished
    smsgw:wake:{lane}           list   nudges that end an idle worker's blocking wait (capped)
    smsgw:worker:{owner}        string "since_ms|beat_ms": a worker's liveness (Redis time), PX WORKER_TTL_MS
    smsgw:sms:{smsID}           string "{id}:{k}": which unit uBill's smsID belongs to (EX SMS_ID_TTL); or
                                       "kept" while callbacks wait for it (EX orphan TTL), so recording
                                       it learns that in the same SET ... GET
    smsgw:orphan:{smsID}        list   callbacks that arrived before (or without) their smsID (EX orphan TTL)
    smsgw:orphan-number:{n}     set    smsIDs with kept orphan callbacks for number n (EX orphan TTL)
    smsgw:orphans               zset   smsIDs with kept orphan callbacks, scored by expiry: trimmed by upkeep
    smsgw:unsettled:{number}    set    "{id}:{k}" units whose outcome is unknown, for callback matching
                                       (EX UNSETTLED_TTL, member removed when the unit is settled)
    smsgw:dead                  zset   "{id}:{k}" dead letters by time: trimmed by upkeep after retention
    smsgw:stream:{client}       stream status events of one client (MINID on every append; upkeep trims idle)
    smsgw:idem:{client}:{scope}:{hash}  string  idempotency record (EX IDEMPOTENCY_TTL)
    smsgw:facade:seq            string counter behind the integer smsIDs of the uBill facade (one key)
    smsgw:facade:{n}            string facade smsID -> message id (expires with the message)
    smsgw:facade-retry:{client}:{fp}  string  "{id}|{smsID}" of a facade call not yet answered for certain
                                       (EX FACADE_RETRY_TTL; deleted once the gateway's answer is definite)
    smsgw:rate:{second}         hash   uBill dispatch counters of one second, all workers (PX RATE_WINDOW_TTL)
    smsgw:demand:{lane}         string set while a lane waits for uBill capacity (PX DEMAND_TTL)
    smsgw:client-rate:{client}  string GCRA state of one client's request limit (PX, self-expiring)
    smsgw:balance               string last uBill balance reading (JSON; one key)
    smsgw:brands                string last reading of uBill's brandNames (JSON; one key, EX BRANDS_TTL)
    smsgw:lock:{name}           string leader lock of a periodic duty (PX)

Pub/sub channels ``smsgw:events`` and ``smsgw:events:{client}`` carry the same JSON events as the streams.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BALANCE",
    "BRANDS",
    "DEAD",
    "EVENTS_CHANNEL",
    "FACADE_SEQ",
    "LUA_CONSTANTS",
    "LUA_PREFIXES",
    "ORPHANS",
    "client_channel",
    "client_rate",
    "client_stream",
    "facade",
    "facade_retry",
    "idempotency",
    "lane_queue",
    "lock",
    "message",
    "orphan",
    "sms",
    "unit_id",
    "wake",
    "worker",
]

PREFIX: Final = "smsgw:"
EVENTS_CHANNEL: Final = PREFIX + "events"
ORPHANS: Final = PREFIX + "orphans"
DEAD: Final = PREFIX + "dead"
FACADE_SEQ: Final = PREFIX + "facade:seq"
BALANCE: Final = PREFIX + "balance"
BRANDS: Final = PREFIX + "brands"

IDEMPOTENCY_TTL: Final = 86_400  # the contract's 24 h
FACADE_RETRY_TTL: Final = 600  # a facade call with no definite answer yet: its repeat is recognised this long
SMS_ID_TTL: Final = 7 * 86_400  # callbacks and reports for an smsID come within days
UNSETTLED_TTL: Final = 2 * 86_400  # unknown outcomes may still be settled by a late callback
WAKE_CAP: Final = 64  # nudges kept per lane: enough to wake every idle worker, never a growing list
RATE_WINDOW_TTL_MS: Final = 3_000  # a one-second window's counters outlive it briefly
DEMAND_TTL_MS: Final = 1_000  # a lane that waited within the last second still claims its share
WORKER_TTL_MS: Final = 86_400_000  # a worker's liveness record outlives any grace; DEL on clean stop
BRANDS_TTL: Final = 7 * 86_400  # a brand reading nobody renews (checks turned off) does not stay for ever
RECONCILE_GIVE_UP_MS: Final = 2 * 86_400_000  # after two days a missing final status will not come
SMS_KEPT: Final = "kept"  # an smsID's index entry while callbacks wait for it (never a unit id, "<msg>:<k>")
TAKE_HEAD: Final = 16  # timers a take reads by rank first: a lane with fewer due costs one read, not two
# A calling unit's reason while its attempt is one a worker took over from a gone owner (then the owner's id):
# should the taker lose track of it, a later take hands it back as orphaned again, never as a plain claim.
TAKEN_OVER: Final = "taken over from "


def message(message_id: str) -> str:
    return f"{PREFIX}msg:{message_id}"


def lane_queue(lane: str) -> str:
    return f"{PREFIX}lane:{lane}"


def wake(lane: str) -> str:
    return f"{PREFIX}wake:{lane}"


def worker(owner: str) -> str:
    return f"{PREFIX}worker:{owner}"


def unit_id(message_id: str, k: int) -> str:
    """A unit's id: its lane timer's member, its dead-letter id and its smsID index value."""
    return f"{message_id}:{k}"


def split_unit_id(unit: str) -> tuple[str, int]:
    message_id, _, k = unit.rpartition(":")
    return message_id, int(k)


def sms(sms_id: str) -> str:
    return f"{PREFIX}sms:{sms_id}"


def orphan(sms_id: str) -> str:
    return f"{PREFIX}orphan:{sms_id}"


def orphan_number(number: str) -> str:
    return f"{PREFIX}orphan-number:{number}"


def unsettled(number: str) -> str:
    return f"{PREFIX}unsettled:{number}"


def client_channel(client: str) -> str:
    return f"{EVENTS_CHANNEL}:{client}"


def client_stream(client: str) -> str:
    return f"{PREFIX}stream:{client}"


def idempotency(client: str, scope: str, key_hash: str) -> str:
    """``scope``: the endpoint (``messages``, ``facade``, ``verifications``): keys are per endpoint."""
    return f"{PREFIX}idem:{client}:{scope}:{key_hash}"


def facade(sms_id: int | str) -> str:
    return f"{PREFIX}facade:{sms_id}"


def facade_retry(client: str, fingerprint: str) -> str:
    return f"{PREFIX}facade-retry:{client}:{fingerprint}"


def rate_window(second: int | str) -> str:
    return f"{PREFIX}rate:{second}"


def demand(lane: str) -> str:
    return f"{PREFIX}demand:{lane}"


def client_rate(client: str) -> str:
    return f"{PREFIX}client-rate:{client}"


def lock(name: str) -> str:
    return f"{PREFIX}lock:{name}"


# The prefixes scripts need, as the Lua prelude's table P (a key is P.name .. id).
LUA_PREFIXES: Final[dict[str, str]] = {
    "msg": message(""),
    "lane": lane_queue(""),
    "wake": wake(""),
    "worker": worker(""),
    "sms": sms(""),
    "orphan": orphan(""),
    "orphan_number": orphan_number(""),
    "unsettled": unsettled(""),
    "stream": client_stream(""),
    "channel": client_channel(""),
    "facade": facade(""),
    "rate": rate_window(""),
    "demand": demand(""),
}
# Single keys and TTLs, as the prelude's table C.
LUA_CONSTANTS: Final[dict[str, str | int]] = {
    "EVENTS_CHANNEL": EVENTS_CHANNEL,
    "ORPHANS": ORPHANS,
    "DEAD": DEAD,
    "FACADE_SEQ": FACADE_SEQ,
    "IDEMPOTENCY_TTL": IDEMPOTENCY_TTL,
    "FACADE_RETRY_TTL": FACADE_RETRY_TTL,
    "SMS_ID_TTL": SMS_ID_TTL,
    "UNSETTLED_TTL": UNSETTLED_TTL,
    "WAKE_CAP": WAKE_CAP,
    "RATE_WINDOW_TTL_MS": RATE_WINDOW_TTL_MS,
    "DEMAND_TTL_MS": DEMAND_TTL_MS,
    "WORKER_TTL_MS": WORKER_TTL_MS,
    "RECONCILE_GIVE_UP_MS": RECONCILE_GIVE_UP_MS,
    "TAKE_HEAD": TAKE_HEAD,
    "SMS_KEPT": SMS_KEPT,
    "TAKEN_OVER": TAKEN_OVER,
}
