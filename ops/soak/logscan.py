"""What the product's own logs say went wrong: error lines per process, grouped by event name.

Not a verdict (a logged error under a fault may be right), but where to look when a figure is not 0.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["scan_logs"]

_LEVELS = frozenset({"error", "critical", "exception"})


def scan_logs(log_dir: Path, top: int = 12) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    tracebacks: Counter[str] = Counter()
    for path in sorted(log_dir.glob("*.log")):
        process = path.stem
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                if line.startswith("Traceback"):
                    tracebacks[process] += 1
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            level = str(entry.get("level", "")).lower()
            name = f"{process.rsplit('-', 1)[0]}: {entry.get('event', '?')}"
            if entry.get("exception") or entry.get("exc_info"):
                tracebacks[process] += 1
                exception = str(entry.get("exception", "")).strip().splitlines()
                if exception:
                    name += f" [{exception[-1][:120]}]"
            if level in _LEVELS:
                errors[name] += 1
            elif level == "warning":
                warnings[name] += 1
    return {
        "errors": dict(errors.most_common(top)),
        "warnings": dict(warnings.most_common(top)),
        "tracebacks": dict(tracebacks),
    }
