"""The soak's output: one table (a row per fault kind), Redis over the run, the key audit, and a JSON file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ops.soak.records import Journal, Sample
from ops.soak.verdict import COLUMNS, MUST_BE_ZERO, Verdict

__all__ = ["redis_figures", "render", "write_json"]

_SHORT = {
    "sends": "sends",
    "accepted": "accepted",
    "stored_unacked": "stored!ack",
    "sent_once": "once",
    "unknown_at_ubill": "unk@uBill",
    "unknown_not_at_ubill": "unk-none",
    "lost": "LOST",
    "duplicated": "DUP",
    "dup_accept_5xx": "dup5xx",
    "dup_caller_retry": "dupCaller",
    "matched_foreign": "matched",
    "false_delivered": "FALSE-DLV",
    "false_status": "FALSE-ST",
    "contract": "CONTRACT",
    "events_missing": "EV-MISS",
    "events_extra": "EV-EXTRA",
}


def _row_order(rows: dict[str, Counter[str]]) -> list[str]:
    special = ("none", "unattributed", "all")
    return sorted(k for k in rows if k not in special) + [k for k in special if k in rows]


def _table(verdict: Verdict, injected: Counter[str]) -> str:
    names = [name for name, _ in COLUMNS]
    header = ["fault kind", "inj", *(_SHORT[n] for n in names)]
    lines = [header]
    for kind in _row_order(verdict.rows):
        row = verdict.rows[kind]
        lines.append([kind, str(injected.get(kind, "")), *(str(row.get(n, 0)) for n in names)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)
    out = []
    for i, line in enumerate(lines):
        if line[0] == "all":
            out.append(rule)
        out.append(
            "  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(line))
        )
        if i == 0:
            out.append(rule)
    return "\n".join(out)


def redis_figures(samples: list[Sample], workload_started: float) -> dict[str, Any]:
    def figures(values: list[tuple[float, int]]) -> dict[str, int | None]:
        if not values:
            return {"before": None, "peak": None, "end": None}
        before = [v for t, v in values if t <= workload_started] or [values[0][1]]
        return {"before": before[-1], "peak": max(v for _, v in values), "end": values[-1][1]}

    memory = [(s.at, s.used_memory) for s in samples if s.used_memory is not None]
    clients = [(s.at, s.connected_clients) for s in samples if s.connected_clients is not None]
    return {
        "used_memory": figures(memory),
        "connected_clients": figures(clients),
        "samples": len(samples),
        "unreachable_samples": sum(1 for s in samples if s.used_memory is None),
    }


def render(journal: Journal, verdict: Verdict, redis: dict[str, Any], audit: dict[str, Any]) -> str:
    injected = Counter(f.kind for f in journal.faults)
    parts = [_table(verdict, injected), ""]
    parts.append("columns: " + "; ".join(f"{_SHORT[n]} = {text}" for n, text in COLUMNS))
    parts.append("must be 0: " + ", ".join(_SHORT[n] for n in MUST_BE_ZERO) + " (the `all` row)")
    parts += ["", *_redis_lines(redis, audit), *_fault_lines(journal), "", *_verdict_lines(journal, verdict)]
    return "\n".join(parts)


def _redis_lines(redis: dict[str, Any], audit: dict[str, Any]) -> list[str]:
    memory, clients = redis["used_memory"], redis["connected_clients"]
    lines = [
        f"Redis used_memory  before {_mib(memory['before'])}  peak {_mib(memory['peak'])}"
        f"  end {_mib(memory['end'])}",
        f"Redis connections  before {clients['before']}  peak {clients['peak']}  end {clients['end']}"
        f"   ({redis['unreachable_samples']} of {redis['samples']} samples found Redis unreachable)",
        f"Key audit: {audit.get('keys', 0)} keys, {audit.get('without_ttl', 0)} without a TTL",
    ]
    for shape, figures in audit.get("by_shape", {}).items():
        if figures["without_ttl"]:
            lines.append(f"  no TTL  {figures['without_ttl']:>7} of {figures['keys']:>7}  {shape}")
    return lines


def _fault_lines(journal: Journal) -> list[str]:
    lines = []
    probes = Counter(f"{f.kind}:{f.detail['probe']}" for f in journal.faults if "probe" in f.detail)
    if probes:
        found = ", ".join(f"{k} x{v}" for k, v in sorted(probes.items()))
        lines.append(f"Redis fault probes (the error a write got): {found}")
    for fault in journal.faults:
        if "error" in fault.detail:
            lines.append(
                f"fault not injected cleanly: {fault.kind} at {fault.started:.1f}: {fault.detail['error']}"
            )
    lines += [f"note: {note}" for note in journal.notes]
    return lines


def _verdict_lines(journal: Journal, verdict: Verdict) -> list[str]:
    failures = verdict.failures
    if not failures:
        lines = [f"PASS: every must-be-0 figure is 0 (seed {journal.seed})"]
    else:
        summary = ", ".join(f"{_SHORT[k]}={v}" for k, v in failures.items())
        lines = [f"FAIL: {summary}  (seed {journal.seed})"]
        for figure in failures:
            for reason, count in verdict.reasons.get(figure, Counter()).most_common():
                lines.append(f"  {_SHORT[figure]:>9} x{count:<5} {reason}")
        lines.append("examples:")
        for figure in failures:
            lines += [f"  {_SHORT[figure]}: {example}" for example in verdict.examples.get(figure, [])]
    for figure in ("dup_accept_5xx", "dup_caller_retry", "matched_foreign"):
        lines += [f"  (apart) {_SHORT[figure]}: {e}" for e in verdict.examples.get(figure, [])[:3]]
    return lines


def _mib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**20:.1f} MiB"


def write_json(path: Path, journal: Journal, verdict: Verdict, extra: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "seed": journal.seed,
        "rows": {kind: dict(row) for kind, row in verdict.rows.items()},
        "failures": verdict.failures,
        "reasons": {figure: dict(reasons) for figure, reasons in verdict.reasons.items()},
        "examples": dict(verdict.examples),
        "faults": [
            {"kind": f.kind, "started": f.started, "ended": f.ended, "detail": f.detail}
            for f in journal.faults
        ],
        "notes": journal.notes,
        **extra,
    }
    path.write_text(json.dumps(data, indent=2, default=str))
