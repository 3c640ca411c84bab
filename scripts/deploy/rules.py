"""Alert rules beyond promtool: the chart's PrometheusRule against ops/prometheus/alerts.yml; the runbooks.

    python scripts/deploy/rules.py extract RENDERED.yaml OUT.yml [--same-as alerts.yml] [--runbook-base URL]
    python scripts/deploy/rules.py runbooks alerts.yml RUNBOOK.md

extract: writes the `spec` of the rendered PrometheusRule as a Prometheus rule file (for promtool). With
--same-as it must equal that file's groups (the chart embeds ops/prometheus/alerts.yml; nothing may drift);
with --runbook-base every runbook_url must start with that base (the chart's runbookBaseUrl took effect).

runbooks: every alert has a runbook_url whose #anchor is a heading of RUNBOOK.md (GitHub/GitLab slugs), and
every heading of RUNBOOK.md that looks like an alert name belongs to an alert.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml


def _alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group.get("rules", []) if "alert" in rule]


def extract(args: argparse.Namespace) -> list[str]:
    docs = [d for d in yaml.safe_load_all(Path(args.rendered).read_text(encoding="utf-8")) if d]
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        return [f"{args.rendered}: expected one PrometheusRule, found {len(rules)}"]
    groups = rules[0]["spec"]["groups"]
    Path(args.out).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    problems = []
    if args.same_as:
        source = yaml.safe_load(Path(args.same_as).read_text(encoding="utf-8"))["groups"]
        if source != groups:
            problems.append(f"the rendered PrometheusRule differs from {args.same_as}")
    if args.runbook_base:
        for rule in _alerts(groups):
            url = rule.get("annotations", {}).get("runbook_url", "")
            if not url.startswith(args.runbook_base):
                problems.append(
                    f"{rule['alert']}: runbook_url {url!r} does not start with {args.runbook_base!r}"
                )
    print(
        f"{Path(args.rendered).name}: PrometheusRule with {len(_alerts(groups))} alerts written to {args.out}"
    )
    return problems


def _slug(heading: str) -> str:
    """The anchor GitHub and GitLab give a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbooks(args: argparse.Namespace) -> list[str]:
    groups = yaml.safe_load(Path(args.rules).read_text(encoding="utf-8"))["groups"]
    text = Path(args.runbook).read_text(encoding="utf-8")
    headings = {_slug(h): h for h in re.findall(r"(?m)^#{1,6}\s+(.+?)\s*$", text)}
    problems = []
    names = set()
    for rule in _alerts(groups):
        names.add(rule["alert"])
        url = rule.get("annotations", {}).get("runbook_url", "")
        path, _, anchor = url.partition("#")
        if not path.endswith("/" + Path(args.runbook).name):
            problems.append(
                f"{rule['alert']}: runbook_url {url!r} does not point at {Path(args.runbook).name}"
            )
        elif anchor not in headings:
            problems.append(f"{rule['alert']}: no heading for #{anchor} in {args.runbook}")
        for key in ("summary", "description"):
            if not rule.get("annotations", {}).get(key):
                problems.append(f"{rule['alert']}: annotation {key} is missing")
        if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append(f"{rule['alert']}: severity label must be critical, warning or info")
    for heading in headings.values():
        if re.fullmatch(r"[A-Z][A-Za-z]+", heading) and heading not in names:
            problems.append(f"{args.runbook}: section {heading!r} has no alert of that name")
    rules, runbook = Path(args.rules).name, Path(args.runbook).name
    print(
        f"{rules}: {len(names)} alerts, each with a runbook section in {runbook}"
        if not problems
        else f"{rules}: runbook problems"
    )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("extract")
    p.add_argument("rendered")
    p.add_argument("out")
    p.add_argument("--same-as")
    p.add_argument("--runbook-base")
    p = sub.add_parser("runbooks")
    p.add_argument("rules")
    p.add_argument("runbook")
    args = parser.parse_args()
    problems = extract(args) if args.command == "extract" else runbooks(args)
    for problem in problems:
        print(f"  ERROR {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
