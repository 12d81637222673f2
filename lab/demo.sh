#!/usr/bin/env bash
# README command 1: install what is needed, build the artifacts, bring the lab up, run the demo.
#
#   bash lab/demo.sh
#
# Leaves the lab running; tear it down with `invoke lab.down` (or `.venv/bin/python -m lab down`).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lab/setup.sh
source lab/setup.sh

step "lab up"
"$VENV/bin/python" -m lab up

step "demo"
"$VENV/bin/python" lab/demo.py

cat >&2 <<'DONE'

The lab is still up:  .venv/bin/python -m lab status
Tear it down with:     .venv/bin/invoke lab.down     (or: .venv/bin/python -m lab down)
DONE
