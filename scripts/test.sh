#!/usr/bin/env bash
# Install everything the tests need and run the whole suite.
set -euo pipefail
. "$(dirname "$0")/bootstrap.sh" test
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -q "$@"
