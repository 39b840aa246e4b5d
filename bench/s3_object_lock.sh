#!/bin/bash
# Requests and time of a first backup and of forget --prune on radosgw: a
# plain bucket beside one with Object Lock (?object-lock=governance:1d).
# Start a cluster with `S3_SERVER_HOLD=1 python tests/s3_server.py`, then:
#   AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... bench/s3_object_lock.sh http://127.0.0.1:PORT
# (the keys from the environment, never the command line). docs/s3.md, "What it costs".
set -euo pipefail
EP=$1
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
export PYTHONPATH=$HERE/src STRONGROOM_PASSWORD=bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/src"
$PY - "$WORK/src" "$EP" <<'PY'
import os, random, sys
from strongroom.storage.s3 import S3Client, S3Credentials, S3Endpoint
r = random.Random(1)
for i in range(20):
    open(f"{sys.argv[1]}/f{i}.bin", "wb").write(r.randbytes(1024 * 1024))
open(f"{sys.argv[1]}/big.bin", "wb").write(r.randbytes(40 * 1024 * 1024))
with S3Client(S3Endpoint.parse(sys.argv[2], "us-east-1", True),
              S3Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])) as c:
    c.create_bucket("bench-plain")
    c.create_bucket("bench-lock", object_lock=True)
PY
for kind in plain lock; do
  if [ $kind = plain ]; then URL="s3:$EP/bench-plain/r"; else URL="s3:$EP/bench-lock/r?object-lock=governance:1d"; fi
  export STRONGROOM_REPO=$URL STRONGROOM_CACHE_DIR=$WORK/cache-$kind
  $PY -m strongroom init --json >/dev/null
  start=$(date +%s.%N); out=$($PY -m strongroom backup "$WORK/src" --json | tail -1); end=$(date +%s.%N)
  echo "$kind first backup: $(echo "$end - $start" | bc) s, requests $(echo "$out" | $PY -c 'import json,sys; print(json.load(sys.stdin)["storage"]["requests"])')"
  head -c 3000000 /dev/urandom > "$WORK/src/f0.bin"
  $PY -m strongroom backup "$WORK/src" --json >/dev/null
  start=$(date +%s.%N); out=$($PY -m strongroom forget --keep-last 1 --prune --json | tail -1); end=$(date +%s.%N)
  echo "$kind forget --prune: $(echo "$end - $start" | bc) s, $(echo "$out" | $PY -c 'import json,sys; d=json.load(sys.stdin); p=d["prune"]; print("requests", d["storage"]["requests"], "removed", len(d["removed"]), "held", len(d["held"]), "objects_held", p["objects_held"], "bytes_held", p["bytes_held"], "freed", p["bytes_freed"])')"
done
