# Sourced by the set-up scripts: a virtual environment in .venv with the project installed.
# Usage: . scripts/bootstrap.sh [EXTRA]   (EXTRA = "test" installs the test dependencies too)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c "import ensurepip" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "python3 needs the venv module: apt-get install python3-venv" >&2
        exit 1
    fi
fi
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PY" -m venv "$ROOT/.venv"
fi
VENV_PY="$ROOT/.venv/bin/python"
"$VENV_PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ "${1:-}" = "test" ]; then
    "$VENV_PY" -m pip install -q -e "$ROOT[test]"
else
    "$VENV_PY" -m pip install -q -e "$ROOT"
fi
