# Sourced by lab/demo.sh and lab/test.sh: everything a clean clone needs, idempotently.
#   host packages (apt), host LXC settings, .venv with the repo installed, the artifacts.
# Expects to run as root from the repository root.

if [ "$(id -u)" -ne 0 ]; then
    echo "lab: run as root (LXC containers and the lab bridge need it)" >&2
    exit 1
fi

PYTHON=${PYTHON:-python3}
VENV=.venv

step() { printf '\n== %s\n' "$*" >&2; }

step "host packages and LXC settings"
"$PYTHON" -m lab install

step "python environment ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when the project's metadata changed (pip is slow even when nothing is to do).
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e '.[test]'
    # The last mypy that can check code as Python 3.8 (the hosts' minimum, for the agent): beside the venv's own.
    "$VENV/bin/python" -m pip install --quiet --upgrade --target "$VENV/mypy-py38" 'mypy==1.14.1'
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi

step "test application artifacts"
"$VENV/bin/python" testapp/build.py
