#!/usr/bin/env bash
# Install strongroom and run its main job on the embedded default: a local
# repository directory and the local SQLite catalog. It names a backup of a
# folder, runs it, lists the snapshot, restores it, shows that the
# restored copy is identical, and checks the snapshot by reading it back.
#   bash scripts/quickstart.sh [FOLDER]      (default: the project's src/ folder)
set -euo pipefail
. "$(dirname "$0")/bootstrap.sh"
SOURCE="$(cd "${1:-$ROOT/src}" && pwd)"
WORK="${STRONGROOM_DEMO_DIR:-$ROOT/demo}"
SR="$ROOT/.venv/bin/strongroom"
mkdir -p "$WORK"
export STRONGROOM_CATALOG="$WORK/catalog.db"
export STRONGROOM_SECRETS="$WORK/secrets.json"
export STRONGROOM_CACHE_DIR="$WORK/cache"
if ! "$SR" config show quickstart >/dev/null 2>&1; then
    # No password given: strongroom generates a strong key and keeps it in the
    # secrets store; `strongroom key export quickstart` prints the recovery kit.
    "$SR" config add quickstart --source "$SOURCE" --target-dir "$WORK/repository" --tag quickstart
fi
"$SR" backup --config quickstart
"$SR" snapshots --config quickstart
rm -rf "$WORK/restore"
"$SR" restore --config quickstart --target "$WORK/restore"
diff -r "$SOURCE" "$WORK/restore$SOURCE" && echo "restored copy of $SOURCE is identical"
"$SR" check --config quickstart --read-data
"$SR" stats --configs
cat <<TEXT

To back it up on a schedule from now on, give it one and start the daemon
(it runs until Ctrl-C or SIGTERM; the web console, /metrics and /healthz on
http://127.0.0.1:9180/, and at its first start it prints the console's password):
  export STRONGROOM_CATALOG="$STRONGROOM_CATALOG" STRONGROOM_SECRETS="$STRONGROOM_SECRETS" STRONGROOM_CACHE_DIR="$STRONGROOM_CACHE_DIR"
  $SR config edit quickstart --schedule "every 6h"
  $SR serve
TEXT
