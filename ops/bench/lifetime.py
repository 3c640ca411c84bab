"""``python -m ops.bench.lifetime``: Redis before, at peak and after retention, the whole life of the data.

A production-shaped mix goes through the real API for a while (a client with a rate and an
``Idempotency-Key`` on every send; OTP, transactional, bulk and scheduled messages, cancels, facade sends,
verifications, delivery callbacks, an event stream). Then the wall clock of every process, Redis included,
moves forward in steps to past the longest retention (``virtualclock.py``) while they keep running, and the
run reads what Redis holds at each step. Nothing is deleted by the run itself: what goes, goes by a TTL or by
the product's own housekeeping.

The verdict: after retention, no key of a message, a verification or a request is left; what remains is the
structure that does not grow with history (named in ``STRUCTURAL``, each at most a few keys), memory is back
within ``MEMORY_SLACK`` of where it started, and the connection count is back too. ``--plant`` writes keys
that would outlive retention during the load, to show the verdict failing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp

from ops.bench.harness import CALLBACK_KEY, PROD_TOKEN, Bench
from ops.bench.numbers import NumberSource
from ops.bench.virtualclock import VirtualClock
from ops.soak.observe import audit_keys
from smsgw.settings import LANES
from smsgw.store import keys
from smsgw.store.verifications import keys as vkeys

__all__ = ["Lifetime", "Snapshot", "main", "run", "verdict"]

DAY: Final = 86_400
# Wall-clock steps (seconds ahead of the start) and what each passes: idempotency records (24 h), event
# streams (SMSGW_EVENTS_RETENTION, 25 h), unsettled outcomes (2 d), messages, smsIDs and brands (7 d after
# their message ends: the load's scheduled messages end 1 d 2 h after it, so the last step is 9 d).
STEPS: Final = (DAY + 3_600, 2 * DAY + 3_600, 3 * DAY, 8 * DAY, 9 * DAY)
# Keys that stay, each a fixed structure whatever the history: one per lane, client, worker or duty, or one
# in all (the facade's smsID counter, the indexes trimmed by housekeeping). From the key definitions.
STRUCTURAL: Final = (
    keys.FACADE_SEQ,
    keys.ORPHANS,
    keys.DEAD,
    keys.BALANCE,
    keys.BRANDS,
    keys.lane_queue(""),
    keys.wake(""),
    keys.worker(""),
    keys.lock(""),
    keys.client_stream(""),
    vkeys.EXPIRIES,
    vkeys.BLOCKS,
)
STRUCTURAL_KEYS_MAX: Final = 40  # all of them together, a constant of the deployment, not of its history
MEMORY_SLACK: Final = 1.5 * 2**20  # allocator fragments, lua caches, client buffers
SETTLE_S: Final = 8.0  # per step: the clock file is re-read within 1 s, housekeeping runs every 2 s
PRODUCT_ENV: Final = {
    "SMSGW_LOG_LEVEL": "info",
    "SMSGW_HOUSEKEEPING_INTERVAL": "2",  # days pass in seconds here: the timers run at a matching pace
    "SMSGW_VERIFY_SWEEP_INTERVAL": "1",
}


@dataclass
class Snapshot:
    label: str
    wall_offset_s: int
    used_memory: int
    keys: int
    connected_clients: int
    without_ttl: int
    dataset: int  # used_memory_dataset: the data, without the server's own overhead
    client_buffers: int  # mem_clients_normal
    by_shape: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class Lifetime:
    seconds: float
    requests: dict[str, int]
    answers: dict[str, int]
    snapshots: list[Snapshot]
    planted: int

    @property
    def before(self) -> Snapshot:
        return self.snapshots[0]

    @property
    def peak(self) -> Snapshot:
        return max(self.snapshots, key=lambda s: s.used_memory)

    @property
    def after(self) -> Snapshot:
        return self.snapshots[-1]


def _structural(shape: str) -> bool:
    return any(shape == s or shape.startswith(s) for s in STRUCTURAL)


def verdict(life: Lifetime) -> list[str]:
    """What is wrong after retention (empty: memory and keys are bounded by retention, not by history)."""
    problems = []
    after, before = life.after, life.before
    leftovers = {s: n for s, n in after.by_shape.items() if not _structural(s)}
    if leftovers:
        problems.append(f"keys of the history left after retention: {leftovers}")
    structural = sum(n["keys"] for s, n in after.by_shape.items() if _structural(s))
    if structural > STRUCTURAL_KEYS_MAX:
        problems.append(f"{structural} structural keys (at most {STRUCTURAL_KEYS_MAX})")
    grown = after.used_memory - before.used_memory
    if grown > MEMORY_SLACK:
        problems.append(f"memory {grown / 2**20:.1f} MiB above the start after retention")
    if after.connected_clients > max(before.connected_clients, life.peak.connected_clients):
        problems.append(f"connections grew after the load: {after.connected_clients}")
    if life.peak.keys <= before.keys + 100:
        problems.append(f"the load left almost nothing in Redis ({life.peak.keys} keys): nothing was tested")
    return problems


class _Driver:
    """The production-shaped mix, at a rate, through the gateway's HTTP API."""

    def __init__(self, bench: Bench, gateway: str) -> None:
        self.bench = bench
        self.gateway = gateway
        self.numbers = NumberSource()
        self.requests: dict[str, int] = {}
        self.answers: dict[str, int] = {}
        self.scheduled: list[str] = []

    def _count(self, kind: str, status: int) -> None:
        self.requests[kind] = self.requests.get(kind, 0) + 1
        key = f"{kind} {status}"
        self.answers[key] = self.answers.get(key, 0) + 1

    async def _send(self, kind: str, body: dict[str, Any]) -> dict[str, Any] | None:
        headers = {"Authorization": f"Bearer {PROD_TOKEN}", "Idempotency-Key": secrets.token_hex(12)}
        async with self.bench.http.post(f"{self.gateway}/v1/messages", json=body, headers=headers) as r:
            self._count(kind, r.status)
            answer: dict[str, Any] = await r.json(content_type=None)
            return answer if r.status == 202 else None

    async def one(self, i: int) -> None:
        slot = i % 20
        if slot < 10:
            await self._send("transactional", {"to": self.numbers.take(1)[0], "text": f"Receipt {i}"})
        elif slot < 14:
            await self._send("otp", {"to": self.numbers.take(1)[0], "text": f"Code {i}", "priority": "otp"})
        elif slot == 14:
            body = {"to": self.numbers.take(20), "text": f"Offer {i}", "priority": "bulk"}
            await self._send("bulk", body)
        elif slot == 15:
            at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
            answer = await self._send(
                "scheduled", {"to": self.numbers.take(1)[0], "text": "Later", "send_at": at}
            )
            if answer is not None:
                self.scheduled.append(str(answer["id"]))
        elif slot == 16 and self.scheduled:
            await self._cancel(self.scheduled.pop(0))
        elif slot == 17:
            await self._facade(i)
        else:
            await self._verification()

    async def _cancel(self, message_id: str) -> None:
        headers = {"Authorization": f"Bearer {PROD_TOKEN}"}
        async with self.bench.http.delete(f"{self.gateway}/v1/messages/{message_id}", headers=headers) as r:
            self._count("cancel", r.status)

    async def _facade(self, i: int) -> None:
        params = {"key": PROD_TOKEN, "brandID": "1", "numbers": self.numbers.take(1)[0], "text": f"Ready {i}"}
        async with self.bench.http.get(f"{self.gateway}/v1/sms/send", params=params) as r:
            self._count("facade", r.status)
            await r.read()

    async def _verification(self) -> None:
        headers = {"Authorization": f"Bearer {PROD_TOKEN}", "Idempotency-Key": secrets.token_hex(12)}
        body = {"to": self.numbers.take(1)[0], "ttl": 600}
        async with self.bench.http.post(f"{self.gateway}/v1/verifications", json=body, headers=headers) as r:
            self._count("verification", r.status)
            created = await r.json(content_type=None)
        if r.status == 201:
            url = f"{self.gateway}/v1/verifications/{created['id']}/check"
            async with self.bench.http.post(url, json={"code": "0000000"}, headers=headers) as r:
                self._count("check", r.status)
                await r.read()

    async def drive(self, seconds: float, rate: float) -> None:
        """``rate`` requests a second, each its own task (a slow answer does not slow the schedule)."""
        tasks: set[asyncio.Task[None]] = set()
        start, i = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            task = asyncio.create_task(self.one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        await asyncio.gather(*tasks, return_exceptions=True)


async def _events(bench: Bench, gateway: str, stop: asyncio.Event) -> int:
    """One client's event stream, read for the whole load (the hub's reader and the stream's cap in play)."""
    seen = 0
    headers = {"Authorization": f"Bearer {PROD_TOKEN}"}
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        async with bench.http.get(f"{gateway}/v1/events", headers=headers) as r:
            while not stop.is_set():
                line = await asyncio.wait_for(r.content.readline(), timeout=1.0)
                seen += line.startswith(b"data:")
    return seen


async def _snapshot(bench: Bench, label: str, offset: int) -> Snapshot:
    info = await bench.redis.info()
    audit = await audit_keys(bench.redis)
    return Snapshot(
        label,
        offset,
        int(info["used_memory"]),
        int(audit["keys"]),
        int(info["connected_clients"]),
        int(audit["without_ttl"]),
        int(info["used_memory_dataset"]),
        int(info["mem_clients_normal"]),
        audit["by_shape"],
    )


async def _drained(bench: Bench) -> None:
    """Until no lane holds due work and the sandbox's callbacks have had time to arrive."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now_ms = int(time.time() * 1000)
        due = 0
        for lane in LANES:
            due += await bench.redis.zcount(keys.lane_queue(lane), "-inf", now_ms)
        if due == 0:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(3.0)


async def _plant(bench: Bench, count: int) -> None:
    """Keys the verdict must catch: no TTL, and a TTL longer than any retention."""
    for n in range(count):
        await bench.redis.set(f"smsgw:msg:planted{n}", "x")
        await bench.redis.set(f"smsgw:idem:planted{n}", "x", ex=30 * DAY)


async def run(
    *, seconds: float, rate: float, plant: int = 0, keep: bool = False, settle: float = SETTLE_S
) -> Lifetime:
    folder = Path(tempfile.mkdtemp(prefix="smsgw-lifetime-"))
    clock = VirtualClock(folder)
    async with Bench(quick=True, pin_cpus=False, keep=keep, overrides=PRODUCT_ENV, clock=clock) as bench:
        gateway = await bench.start_gateway()
        await bench.start_worker()
        await bench.sandbox_patch(
            latency=0.02, callback_url=gateway.url + "/callbacks/ubill", callback_key=CALLBACK_KEY
        )
        snapshots = [await _snapshot(bench, "before", 0)]
        driver = _Driver(bench, gateway.url)
        stop = asyncio.Event()
        reader = asyncio.create_task(_events(bench, gateway.url, stop))
        await driver.drive(seconds, rate)
        if plant:
            await _plant(bench, plant)
        await _drained(bench)
        stop.set()
        await reader
        snapshots.append(await _snapshot(bench, "peak (load done)", 0))
        for step in STEPS:
            clock.advance(step - clock.offset_s)
            await asyncio.sleep(settle)
            snapshots.append(await _snapshot(bench, f"+{step / DAY:.2f} days", step))
    return Lifetime(seconds, driver.requests, driver.answers, snapshots, plant)


def _table(life: Lifetime) -> str:
    head = f"{'when':<18} {'used_memory':>12} {'dataset':>12} {'client bufs':>12} {'keys':>8} {'no TTL':>7}"
    lines = [f"{head} {'clients':>8}"]
    for s in life.snapshots:
        memory = " ".join(f"{b / 2**20:>8.2f} MiB" for b in (s.used_memory, s.dataset, s.client_buffers))
        lines.append(f"{s.label:<18} {memory} {s.keys:>8,} {s.without_ttl:>7} {s.connected_clients:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.lifetime", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0, help="load duration (default 120)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests a second (default 100)")
    parser.add_argument("--plant", type=int, default=0, help="plant N leaking keys: the verdict must fail")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, AOF)")
    args = parser.parse_args(argv)
    life = asyncio.run(run(seconds=args.seconds, rate=args.rate, plant=args.plant, keep=args.keep))
    problems = verdict(life)
    print(_table(life))
    print(f"requests: {life.requests}")
    print(f"answers: {life.answers}")
    print("after retention, key shapes left:", {s: n["keys"] for s, n in life.after.by_shape.items()})
    print("PASS" if not problems else "FAIL\n  " + "\n  ".join(problems))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data = {
        **asdict(life),
        "problems": problems,
        "command": " ".join(["python -m ops.bench.lifetime", *sys.argv[1:]]),
    }
    for name in (f"lifetime-{stamp}.json", "lifetime-latest.json"):
        (args.out / name).write_text(json.dumps(data, indent=2))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
