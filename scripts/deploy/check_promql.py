"""Parse every PromQL query we ship and check it against the metrics smsgw actually exports.

    python scripts/deploy/check_promql.py [--dashboard D.json]... [--rules R.yml]... [--manifests M.yaml]...
    python scripts/deploy/check_promql.py --exposition gateway|worker | promtool check metrics

Queries come from Grafana dashboards (panel targets and template variables), Prometheus rule files and the
KEDA ScaledObject triggers of rendered chart output. Each must parse (promql-parser), and each selector must
name a series smsgw.metrics defines (with the _total/_bucket/_count/_sum suffixes the client adds), match only
labels that metric has (or that Prometheus adds when scraping), use real lanes, and pick `le` bounds that
exist in the histogram's buckets. A renamed metric or label then fails CI instead of leaving a blank panel or
an alert that can never fire.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
# Labels the scrape adds (Prometheus, the Prometheus Operator, docker-compose's static config).
TARGET_LABELS = {"namespace", "pod", "instance", "job", "service", "endpoint", "container"}
# Grafana's built-in range variables, replaced by a duration so the query parses.
GRAFANA_DURATIONS = re.compile(
    r"\$(__rate_interval|__interval|__range|__auto)\b|\$\{(__rate_interval|__interval|__range)}"
)
GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?}?")


def _go_float(value: float) -> str:
    """How prometheus_client writes an `le` bound (floatToGoString)."""
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


def known_metrics() -> dict[str, dict[str, Any]]:
    """Every exported series name -> its label names and, for histogram series, its `le` bounds."""
    sys.path.insert(0, str(ROOT))
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from smsgw.metrics import GatewayMetrics, WorkerMetrics  # noqa: PLC0415
    from smsgw.settings import LANES  # noqa: PLC0415
    from smsgw.verify.metrics import VerifyMetrics  # noqa: PLC0415

    series: dict[str, dict[str, Any]] = {}
    for holder in (GatewayMetrics(), WorkerMetrics(), VerifyMetrics(CollectorRegistry())):
        for metric in vars(holder).values():
            kind = getattr(metric, "_type", None)
            if kind is None:
                continue
            name = metric._name
            labels = set(metric._labelnames)
            if kind == "counter":
                names = {f"{name}_total": labels, f"{name}_created": labels}
            elif kind == "histogram":
                bounds = {_go_float(b) for b in metric._upper_bounds}
                names = {
                    f"{name}_bucket": labels | {"le"},
                    f"{name}_count": labels,
                    f"{name}_sum": labels,
                    f"{name}_created": labels,
                }
                for key, value in names.items():
                    series[key] = {"labels": value, "le": bounds if key.endswith("_bucket") else None}
                continue
            else:
                names = {name: labels}
            for key, value in names.items():
                series[key] = {"labels": value, "le": None}
        # process_* and python_* from the default collectors.
        for family in holder.registry.collect():
            for sample in family.samples:
                series.setdefault(sample.name, {"labels": set(sample.labels), "le": None})
        # Custom collectors whose series exist only once there is something to say (UbillBalance): their
        # names come from describe(), which the registry has already read. They carry no labels.
        for name in holder.registry._names_to_collectors:
            series.setdefault(name, {"labels": set(), "le": None})
    series["__lanes__"] = {"labels": set(LANES), "le": None}
    return series


def exposition(component: str) -> str:
    """The text a fresh gateway or worker serves on /metrics, one child per labelled metric, for promtool."""
    sys.path.insert(0, str(ROOT))
    from prometheus_client import generate_latest  # noqa: PLC0415

    from smsgw.metrics import GatewayMetrics, WorkerMetrics  # noqa: PLC0415
    from smsgw.verify.metrics import VerifyMetrics  # noqa: PLC0415

    holder = GatewayMetrics() if component == "gateway" else WorkerMetrics()
    extra = [VerifyMetrics(holder.registry)] if component == "gateway" else []  # registered by the gateway
    for metric in [m for h in (holder, *extra) for m in vars(h).values()]:
        if getattr(metric, "_type", None) is not None and metric._labelnames:
            metric.labels(*["x"] * len(metric._labelnames))
    if isinstance(holder, WorkerMetrics):
        holder.balance.set(1000, time.time() - 30)  # the balance series exist only once a reading does
    return generate_latest(holder.registry).decode()


def grafana_queries(path: Path) -> Iterator[tuple[str, str]]:
    dashboard = json.loads(path.read_text(encoding="utf-8"))

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield f"{path.name} panel {panel.get('title')!r} {target.get('refId')}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        match = (
            re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", text or "")
            if variable.get("type") == "query"
            else None
        )
        if match:
            yield f"{path.name} variable {variable['name']!r}", match.group(1)


def rule_queries(path: Path) -> Iterator[tuple[str, str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for group in data.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            yield f"{path.name} rule {name}", str(rule["expr"])


def manifest_queries(path: Path) -> Iterator[tuple[str, str]]:
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if not doc or doc.get("kind") != "ScaledObject":
            continue
        for trigger in doc["spec"].get("triggers", []):
            if trigger.get("type") == "prometheus":
                yield f"{path.name} ScaledObject trigger {trigger.get('name')}", trigger["metadata"]["query"]


def _substitute(expr: str) -> str:
    expr = GRAFANA_DURATIONS.sub("5m", expr)
    # Any other dashboard variable sits inside a label matcher: a regex that matches everything parses.
    return GRAFANA_VARIABLE.sub(".*", expr)


def check(where: str, expr: str, metrics: dict[str, dict[str, Any]]) -> list[str]:
    try:
        ast = promql_parser.parse(_substitute(expr))
    except (ValueError, RuntimeError) as exc:
        return [f"{where}: does not parse: {exc}"]
    problems: list[str] = []

    def visit(node: Any) -> bool:
        if not isinstance(node, promql_parser.VectorSelector):
            return True
        matchers = list(node.matchers.matchers) + [m for group in node.matchers.or_matchers for m in group]
        name = node.name or next((m.value for m in matchers if m.name == "__name__"), None)
        known = metrics.get(name or "")
        if known is None:
            problems.append(f"{where}: {name!r} is not a metric smsgw exports")
            return True
        for matcher in matchers:
            if matcher.name == "__name__":
                continue
            if matcher.name not in known["labels"] | TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {matcher.name!r}")
            elif matcher.name == "lane" and matcher.op in (
                promql_parser.MatchOp.Equal,
                promql_parser.MatchOp.Re,
            ):
                for lane in matcher.value.split("|"):
                    if lane not in metrics["__lanes__"]["labels"] and lane != ".*":
                        problems.append(f"{where}: lane {lane!r} does not exist")
            elif (
                matcher.name == "le"
                and matcher.op == promql_parser.MatchOp.Equal
                and known["le"] is not None
                and matcher.value not in known["le"]
            ):
                problems.append(
                    f"{where}: {name} has no bucket le={matcher.value!r} "
                    f"(bounds: {', '.join(sorted(known['le'], key=float))})"
                )
        return True

    promql_parser.walk(ast, visit)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dashboard", action="append", default=[], type=Path)
    parser.add_argument("--rules", action="append", default=[], type=Path)
    parser.add_argument("--manifests", action="append", default=[], type=Path)
    parser.add_argument("--exposition", choices=["gateway", "worker"])
    args = parser.parse_args()
    if args.exposition:
        sys.stdout.write(exposition(args.exposition))
        return 0
    metrics = known_metrics()
    queries: list[tuple[str, str]] = []
    for path in args.dashboard:
        queries += grafana_queries(path)
    for path in args.rules:
        queries += rule_queries(path)
    for path in args.manifests:
        queries += manifest_queries(path)
    problems = [p for where, expr in queries for p in check(where, expr, metrics)]
    for problem in problems:
        print(f"  ERROR {problem}")
    print(f"{len(queries)} queries parsed, {len(problems)} problem(s)")
    return 1 if problems or not queries else 0


if __name__ == "__main__":
    sys.exit(main())
