"""Validate rendered chart output: Kubernetes schemas, the custom resources, and what this chart promises.

    python scripts/deploy/validate_manifests.py [-k 1.30.0] RENDERED.yaml...

1. Built-in kinds: kubernetes-validate's bundled schemas in strict mode (unknown fields fail). A kind it
   has no schema for fails too (kubernetes-validate alone only warns: a typo in apiVersion would pass).
2. Custom resources (ServiceMonitor, PrometheusRule, ScaledObject): the committed schemas in
   helm/crd-schemas/ (see scripts/deploy/gen_crd_schemas.py); any other custom kind fails.
3. The chart's promises: hardened pods, probes on /healthz and /readyz, the worker's grace period above its
   drain time, secrets as files (each SMSGW_<NAME>_FILE naming a file of a mounted Secret, no secret in an
   environment variable), an Ingress with TLS for /callbacks/ubill only, no Secret objects and no secret in
   the ConfigMap, and every SMSGW_* name in the ConfigMap known to smsgw.settings, its values accepted by
   Settings.from_env.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring.coreos.com-v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
}
SECRET_SETTINGS = {
    "SMSGW_UBILL_API_KEY",
    "SMSGW_CALLBACK_KEY",
    "SMSGW_CLIENTS",
    "SMSGW_REDIS_PASSWORD",
    "SMSGW_REDIS_SENTINEL_PASSWORD",
}
# The secrets each component cannot start without, all read from files.
REQUIRED_SECRET_FILES = {
    "gateway": {"SMSGW_CALLBACK_KEY_FILE", "SMSGW_CLIENTS_FILE"},
    "worker": {"SMSGW_UBILL_API_KEY_FILE"},
}
WORKLOAD_COMPONENTS = {"gateway", "worker"}
# The only writable path under a read-only root filesystem (checked, not used, here).
TMP = "/tmp"  # noqa: S108


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def _name(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """Optional fields are anyOf [type, null]: name the deepest real failure, not the whole subtree."""
    leaves: list[jsonschema.ValidationError] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if current.context:
            pending.extend(current.context)
        elif not (current.validator == "type" and current.validator_value == "null"):
            leaves.append(current)
    return max(leaves, key=lambda e: len(e.absolute_path), default=error)


def validate_schema(doc: dict[str, Any], version: str, problems: Problems, where: str) -> str:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        schema = json.loads((ROOT / "helm" / "crd-schemas" / CRD_SCHEMAS[key]).read_text(encoding="utf-8"))
        for found in jsonschema.Draft202012Validator(schema).iter_errors(doc):
            error = _deepest(found)
            message = error.message if len(error.message) < 300 else error.message[:300] + "..."
            problems.add(where, f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {message}")
        return "crd"
    try:
        kv.validate(doc, version, strict=True)
    except kv.ValidationError as exc:
        problems.add(where, f"{'.'.join(map(str, exc.path))}: {exc.message}")
    except kv.SchemaNotFoundError as exc:
        problems.add(
            where, f"{exc.message} (neither a built-in kind nor a custom resource with a committed schema)"
        )
    return "builtin"


def _containers(doc: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    pod = doc["spec"]["template"]["spec"]
    return pod, pod.get("containers", []) + pod.get("initContainers", [])


def check_workload(doc: dict[str, Any], config: dict[str, str], problems: Problems, where: str) -> None:
    pod, containers = _containers(doc)
    psc = pod.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        problems.add(where, "pod securityContext.runAsNonRoot must be true")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.add(where, "pod seccompProfile must be RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        problems.add(where, "automountServiceAccountToken must be false")
    tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    component = doc["metadata"]["labels"].get("app.kubernetes.io/component")
    for container in containers:
        here = f"{where} container {container['name']}"
        check_container(container, tmp_volumes, problems, here)
        check_secret_files(pod, container, REQUIRED_SECRET_FILES.get(component, set()), problems, here)
    if component == "worker":
        grace = float(config.get("SMSGW_SHUTDOWN_GRACE", 25.0))
        period = pod.get("terminationGracePeriodSeconds", 30)
        if not period > grace:
            problems.add(
                where, f"terminationGracePeriodSeconds ({period}) must exceed SMSGW_SHUTDOWN_GRACE ({grace})"
            )


def check_container(c: dict[str, Any], tmp_volumes: set[str], problems: Problems, where: str) -> None:
    sc = c.get("securityContext") or {}
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.add(where, "readOnlyRootFilesystem must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.add(where, "allowPrivilegeEscalation must be false")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        problems.add(where, "capabilities must drop ALL")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    if mounts.get(TMP) not in tmp_volumes:
        problems.add(where, f"{TMP} must be an emptyDir mount")
    if ((c.get("livenessProbe") or {}).get("httpGet") or {}).get("path") != "/healthz":
        problems.add(where, "livenessProbe must GET /healthz")
    if ((c.get("readinessProbe") or {}).get("httpGet") or {}).get("path") != "/readyz":
        problems.add(where, "readinessProbe must GET /readyz")
    if not (c.get("resources") or {}).get("requests"):
        problems.add(where, "resources.requests must be set")
    for env in c.get("env", []):
        if env["name"] in SECRET_SETTINGS and "value" in env:
            problems.add(where, f"{env['name']} must come from a Secret, not a literal value")


def _secret_files(volume: dict[str, Any]) -> set[str]:
    """The file names a Secret (or a projected volume of Secrets) puts in its mount."""
    if "secret" in volume:
        return {item["path"] for item in volume["secret"].get("items", [])}
    sources = (volume.get("projected") or {}).get("sources", [])
    return {item["path"] for source in sources for item in (source.get("secret") or {}).get("items", [])}


def check_secret_files(
    pod: dict[str, Any], c: dict[str, Any], required: set[str], problems: Problems, where: str
) -> None:
    """Secrets reach smsgw as files: each SMSGW_<NAME>_FILE names a file of a mounted Secret, no env var."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files = {
        f"{m['mountPath'].rstrip('/')}/{name}"
        for m in c.get("volumeMounts", [])
        for name in _secret_files(volumes.get(m["name"], {}))
    }
    env = {e["name"]: e for e in c.get("env", [])}
    for name in sorted(required - env.keys()):
        problems.add(where, f"{name} must be set (the secret is read from a file)")
    for name, var in env.items():
        if "secretKeyRef" in (var.get("valueFrom") or {}):
            problems.add(where, f"{name} comes from a Secret as an environment variable: mount it as a file")
        if name.startswith("SMSGW_") and name.endswith("_FILE") and var.get("value") not in files:
            problems.add(where, f"{name}={var.get('value')!r} is no file of a mounted Secret")


def check_ingress(doc: dict[str, Any], problems: Problems, where: str) -> None:
    spec = doc["spec"]
    paths = [(p["path"], p["pathType"]) for rule in spec.get("rules", []) for p in rule["http"]["paths"]]
    if paths != [("/callbacks/ubill", "Exact")]:
        problems.add(where, f"must route exactly one path, /callbacks/ubill (Exact), got {paths}")
    if "defaultBackend" in spec:
        problems.add(where, "must not have a defaultBackend (it would expose every path)")
    hosts = {rule.get("host") for rule in spec.get("rules", [])}
    tls_hosts = {h for tls in spec.get("tls", []) for h in tls.get("hosts", [])}
    if not hosts <= tls_hosts:
        problems.add(where, f"TLS must cover every host ({sorted(hosts - tls_hosts)} not covered)")


def check_config(doc: dict[str, Any], problems: Problems, where: str) -> None:
    data = doc.get("data") or {}
    for name in sorted(SECRET_SETTINGS & data.keys()):
        problems.add(where, f"{name} is a secret and must not be in a ConfigMap")
    try:
        from smsgw.settings import Settings, unknown_names  # noqa: PLC0415 - needs the project on the path
    except ImportError as exc:
        problems.add(where, f"cannot import smsgw.settings to check the settings ({exc})")
        return
    for name in unknown_names(data):
        problems.add(where, f"{name} is not a setting smsgw reads (typo?)")
    try:
        Settings.from_env(data)
    except Exception as exc:
        problems.add(where, f"smsgw would refuse this configuration: {exc}")


def check_file(path: Path, version: str) -> tuple[int, Problems]:
    problems = Problems()
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    seen: set[tuple[str, str]] = set()
    config: dict[str, str] = {}
    for doc in docs:
        if doc.get("kind") == "ConfigMap":
            config.update(doc.get("data") or {})
    counts = {"builtin": 0, "crd": 0}
    for doc in docs:
        where = f"{path.name} {_name(doc)}"
        key = (doc.get("kind", ""), (doc.get("metadata") or {}).get("name", ""))
        if key in seen:
            problems.add(where, "rendered twice")
        seen.add(key)
        counts[validate_schema(doc, version, problems, where)] += 1
        labels = (doc.get("metadata") or {}).get("labels") or {}
        for label in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "helm.sh/chart"):
            if label not in labels:
                problems.add(where, f"missing label {label}")
        kind = doc.get("kind")
        if kind == "Secret":
            problems.add(where, "the chart must not create Secrets (they are created outside it)")
        elif kind == "Deployment":
            check_workload(doc, config, problems, where)
        elif kind == "Ingress":
            check_ingress(doc, problems, where)
        elif kind == "ConfigMap":
            check_config(doc, problems, where)
    components = {
        d["metadata"]["labels"].get("app.kubernetes.io/component")
        for d in docs
        if d.get("kind") == "Deployment"
    }
    if components != WORKLOAD_COMPONENTS:
        problems.add(
            path.name, f"expected Deployments for {sorted(WORKLOAD_COMPONENTS)}, got {sorted(components)}"
        )
    print(
        f"{path.name}: {len(docs)} objects ({counts['builtin']} built-in, Kubernetes {version} schemas; "
        f"{counts['crd']} custom resources, helm/crd-schemas), {len(problems.items)} problem(s)"
    )
    return len(docs), problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--kubernetes-version", default="1.30.0")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    failed = False
    for path in args.files:
        _, problems = check_file(path, args.kubernetes_version)
        for item in problems.items:
            print(f"  ERROR {item}")
        failed |= bool(problems.items)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
