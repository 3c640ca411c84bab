"""The results table (rows, Markdown) and the JSON files (``results/<UTC stamp>.json``, ``latest.json``)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Row", "percentile", "summary", "table", "write_results"]


@dataclass(frozen=True)
class Row:
    """One figure beside its baseline; ``ok`` is None when the figure has no target."""

    figure: str
    value: float | None
    unit: str
    baseline: float | None
    baseline_label: str
    target: str = ""
    ok: bool | None = None
    ratio: float | None = None
    baseline_unit: str | None = None  # when the baseline counts something else (arq jobs, not recipients)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: Sequence[float], digits: int = 2) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": round(min(values), digits),
        "p50": round(statistics.median(values), digits),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "max": round(max(values), digits),
        "mean": round(statistics.fmean(values), digits),
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 100:
        return f"{int(value)} {unit}".strip()
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{text} {unit}".strip()


def table(rows: Sequence[Row]) -> str:
    """A Markdown table (pastes into the README as it is)."""
    header = ("Figure", "sms-gateway", "Baseline", "Baseline value", "Ratio", "Target", "Met")
    lines = [
        (
            r.figure,
            _fmt(r.value, r.unit),
            r.baseline_label,
            _fmt(r.baseline, r.baseline_unit or r.unit),
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target or "-",
            "-" if r.ok is None else ("yes" if r.ok else "NO"),
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)
    ]

    def render(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([render(header), rule, *map(render, lines)])


def write_results(results: dict[str, Any], folder: Path, stamp: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, sort_keys=False) + "\n"
    path = folder / f"{stamp}.json"
    path.write_text(text)
    (folder / "latest.json").write_text(text)
    return path
