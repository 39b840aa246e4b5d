#!/usr/bin/env bash
# Install strongroom and run its main job on the embedded default: back up a
# folder into a local repository, list the recovery point, restore it and
# show that the restored copy is identical.
#   bash scripts/quickstart.sh [FOLDER]      (default: the project's src/ folder)
set -euo pipefail
. "$(dirname "$0")/bootstrap.sh"
SOURCE="$(cd "${1:-$ROOT/src}" && pwd)"
WORK="${STRONGROOM_DEMO_DIR:-$ROOT/demo}"
SR="$ROOT/.venv/bin/strongroom"
mkdir -p "$WORK"
export STRONGROOM_REPO="$WORK/repository"
export STRONGROOM_PASSWORD_FILE="$WORK/password"
if [ ! -s "$STRONGROOM_PASSWORD_FILE" ]; then
    (umask 077 && "$ROOT/.venv/bin/python" -c "import secrets; print(secrets.token_urlsafe(32))" > "$STRONGROOM_PASSWORD_FILE")
    echo "generated a repository password in $STRONGROOM_PASSWORD_FILE (keep a copy somewhere else)"
fi
[ -e "$STRONGROOM_REPO/config" ] || "$SR" init
"$SR" backup "$SOURCE" --tag quickstart
"$SR" snapshots
rm -rf "$WORK/restore"
"$SR" restore latest --target "$WORK/restore" --verify
diff -r "$SOURCE" "$WORK/restore$SOURCE" && echo "restored copy of $SOURCE is identical"
"$SR" check --read-data
