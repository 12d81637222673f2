#!/usr/bin/env bash
# README command 2: install what is needed, bring the lab up, run every test, tear the lab down.
#
#   bash lab/test.sh [pytest args...]      (default: -q tests)
#
# Works from a clean clone as root; needs only the package registries (apt, PyPI).
# Idempotent if the lab is already up; always leaves it down; exits with pytest's code.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# shellcheck source=lab/setup.sh
source lab/setup.sh

teardown() {
    local rc=$?
    step "lab down"
    "$VENV/bin/python" -m lab down || rc=1
    "$VENV/bin/python" -m lab check-down || rc=1
    "$VENV/bin/python" -m lab timings || true
    echo "lab/test.sh: total $(( $(date +%s) - start )) s" >&2
    exit $rc
}
trap teardown EXIT

step "checks: ruff and mypy (strict on upgrader/, the agent excepted)"
"$VENV/bin/ruff" check upgrader tests lab testapp bench
"$VENV/bin/mypy"

step "lab up"
"$VENV/bin/python" -m lab up

step "tests"
set +e
"$VENV/bin/python" -m pytest "${@:--q}" tests
rc=$?
set -e
exit $rc
