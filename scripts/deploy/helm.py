"""`helm lint` and `helm template` without a helm binary: helm-python-sdk (Helm v4's SDK through ctypes).

    python scripts/deploy/helm.py lint CHART [-f VALUES]... [--strict] [--kube-version v1.30.0]
    python scripts/deploy/helm.py template CHART [-f VALUES]... [--name N] [--namespace NS] > out.yaml

Several -f files merge like helm's: maps deeply, later files win, lists are replaced, null deletes a key.
`template` writes one multi-document stream with `# Source:` comments, as `helm template` does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _values(files: list[str]) -> dict[str, Any] | None:
    if not files:
        return None
    merged: dict[str, Any] = {}
    for name in files:
        merged = _merge(merged, helm.values_from_yaml(Path(name).read_text(encoding="utf-8")))
    return merged


def lint(args: argparse.Namespace) -> int:
    report = helm.lint(
        args.chart,
        _values(args.values),
        strict=args.strict,
        kube_version=args.kube_version,
        namespace=args.namespace,
    )
    worst = 0
    for message in report.get("messages") or []:
        severity = int(message.get("severity", 0))
        worst = max(worst, severity)
        print(f"[{SEVERITY.get(severity, severity)}] {message.get('path', '')}: {message.get('error', '')}")
    for error in report.get("errors") or []:
        print(f"[ERROR] {error}")
    # --strict: warnings fail too, as with `helm lint --strict`.
    failed = bool(report.get("errors")) or worst >= (2 if args.strict else 3)
    print(f"{report.get('total_charts_linted', 0)} chart(s) linted, {'FAILED' if failed else 'ok'}")
    return 1 if failed else 0


def template(args: argparse.Namespace) -> int:
    helm.validate_release_name(args.name)
    with helm.Chart.load(args.chart) as chart:
        values = _values(args.values)
        chart.validate_schema(chart.merge_values(values))
        manifests = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    out = []
    for path in sorted(manifests):
        text = manifests[path].strip()
        # Like helm template: NOTES.txt is not a manifest, and a template that renders nothing is no document.
        if path.endswith("NOTES.txt") or not text:
            continue
        for part in text.split("\n---\n"):
            doc = part.strip().removeprefix("---").strip()
            if doc:
                out.append(f"---\n# Source: {path}\n{doc}\n")
    sys.stdout.write("".join(out))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("lint", "template"):
        p = sub.add_parser(name)
        p.add_argument("chart")
        p.add_argument("-f", "--values", action="append", default=[])
        p.add_argument("--namespace", default="sms")
    sub.choices["lint"].add_argument("--strict", action="store_true")
    sub.choices["lint"].add_argument("--kube-version", default=None)
    sub.choices["template"].add_argument("--name", default="sms-gateway")
    args = parser.parse_args()
    try:
        with _quiet_symlink_notes():
            return lint(args) if args.command == "lint" else template(args)
    except helm.HelmError as exc:
        print(f"helm {args.command}: {exc}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _quiet_symlink_notes() -> Iterator[None]:
    """Drop the Go loader's INFO line about each followed symlink (files/alerts.yml) from stderr.

    Go writes the line straight to file descriptor 2, past Python's logging, so the descriptor itself is
    swapped for a file while the SDK runs; every other line is passed on.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if "found symbolic link in path" not in line:
                    sys.stderr.write(line)


if __name__ == "__main__":
    sys.exit(main())
