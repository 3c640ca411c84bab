#!/usr/bin/env bash
# checkov in a virtualenv of its own (its pins would hold back the project's dependencies), at the version
# pyproject's `scan` extra pins (new releases add checks). Does nothing when that version is there already.
# Called by scripts/check-deploy.sh, and by scripts/check in the background while the project installs.
#
#   PYTHON=/path/to/python CHECKOV_VENV=/path/to/venv scripts/deploy/install-checkov.sh
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 2
PYTHON="${PYTHON:-python3}"
CHECKOV_VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"

spec=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["scan"][0])')
if [ "$("$CHECKOV_VENV/bin/checkov" --version 2>/dev/null)" = "${spec##*==}" ]; then
    exit 0
fi
echo "  installing $spec into ${CHECKOV_VENV#"$ROOT"/}"
t0=$SECONDS
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
{ rm -rf "$CHECKOV_VENV" && "$PYTHON" -m venv "$CHECKOV_VENV" \
    && "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$spec"; } >"$log" 2>&1 \
    || { cat "$log" >&2; echo "install-checkov: installing checkov failed" >&2; exit 2; }
echo "  checkov installed in $((SECONDS - t0))s"
