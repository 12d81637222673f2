#!/usr/bin/env bash
# README command 2: install what is needed, bring the lab up, run every test, tear the lab down.
#
#   bash lab/test.sh [pytest args...]      (default: -q tests)
#
# Works from a clean clone as root; needs only the package registries (apt, PyPI).
# Idempotent if the lab is already up; always leaves it down; exits with pytest's code, or 1 if the run
# changed the git tree (a clean clone stays clean: the run's reliability table goes to build/reliability/).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# What git sees before anything runs: tracked changes (with their content) and untracked files.
tree_state() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git status --porcelain --untracked-files=all
        git diff HEAD | sha256sum
    fi
}
tree_before=$(tree_state)

# shellcheck source=lab/setup.sh
source lab/setup.sh

teardown() {
    local rc=$?
    step "lab down"
    if [ -z "${UPGRADER_LAB_LOCK_HELD:-}" ]; then  # failed before "lab up": take the lab's lock to tear it down
        exec 9>>"${UPGRADER_LAB_LOCK:-/run/lock/upgrader-lab.lock}"
        flock 9
    fi
    "$VENV/bin/python" -m lab down || rc=1
    "$VENV/bin/python" -m lab check-down || rc=1
    "$VENV/bin/python" -m lab timings || true
    echo "lab/test.sh: total $(( $(date +%s) - start )) s" >&2
    exit $rc
}
trap teardown EXIT

step "checks: ruff (lint and format) and mypy (strict on upgrader/, the agent at the oldest Python mypy targets; tests/, lab/, testapp/ not strict)"
"$VENV/bin/ruff" check upgrader tests lab testapp bench
"$VENV/bin/ruff" format --check upgrader tests lab testapp bench
"$VENV/bin/mypy"
"$VENV/bin/mypy" --python-version 3.10 upgrader/agent/*.py
# What hosts run (all of upgrader/agent/ but the controller's __init__ and build), strict, as Python 3.8.
PYTHONPATH="$VENV/mypy-py38" "$VENV/bin/python" -m mypy --config-file lab/mypy-agent-py38.ini \
    $(ls upgrader/agent/*.py | grep -v -e '/__init__.py$' -e '/build.py$')

step "lab up"
# The lab is one per machine: hold its lock from here to the teardown, so a test session started beside
# this one waits instead of having its hosts destroyed under it (tests/vm/conftest.py takes the same lock,
# and skips it when UPGRADER_LAB_LOCK_HELD says this script holds it).
LAB_LOCK=${UPGRADER_LAB_LOCK:-/run/lock/upgrader-lab.lock}
mkdir -p "$(dirname "$LAB_LOCK")"
exec 9>>"$LAB_LOCK"
flock -n 9 || { echo "lab/test.sh: waiting for $LAB_LOCK (another test session is using the lab)" >&2; flock 9; }
export UPGRADER_LAB_LOCK_HELD=1
"$VENV/bin/python" -m lab up

step "tests"
set +e
"$VENV/bin/python" -m pytest "${@:--q}" tests
rc=$?
set -e

step "clean tree: the run changed no file git tracks and left no file it does not ignore"
if [ "$(tree_state)" != "$tree_before" ]; then
    echo "lab/test.sh: the run changed the tree (git status --porcelain):" >&2
    git status --porcelain --untracked-files=all >&2
    [ "$rc" -ne 0 ] || rc=1
fi
exit $rc
