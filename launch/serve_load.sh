#!/usr/bin/env bash
# Load test of `atspeed serve` on trained models: starts the server on a free loopback port, runs
# tools/load_test.py with the dataset's real test-user histories (modes target, strict, relaxed;
# concurrency 1, 4, 16), then stops the server with SIGTERM.
#
#   bash launch/serve_load.sh [TARGET.h5] [DRAFT.h5] [load_test.py options...]
#
# Defaults: runs/beauty-target/best.h5 and runs/beauty-draft/best.h5 (from `launch/results.sh beauty`),
# data=beauty. Environment: ATSPEED_BIN (build/bin/atspeed), SERVE_THREADS (run.threads, 2),
# SERVE_ARGS (extra serve overrides, e.g. "serve.max_batch=16 data=games"), OUT (runs/serve-load),
# DATA_DIR (../shared/data/amazon/beauty). Output: $OUT/server.log, $OUT/load.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET="${1:-runs/beauty-target/best.h5}"
DRAFT="${2:-runs/beauty-draft/best.h5}"
shift $(( $# < 2 ? $# : 2 ))
BIN="${ATSPEED_BIN:-build/bin/atspeed}"
OUT="${OUT:-runs/serve-load}"
DATA_DIR="${DATA_DIR:-../shared/data/amazon/beauty}"
mkdir -p "$OUT"
for f in "$BIN" "$TARGET" "$DRAFT"; do [ -e "$f" ] || { echo "serve_load.sh: $f not found" >&2; exit 2; }; done

# Every request names its mode; an explicit default mode skips auto's planning at startup.
"$BIN" serve serve.target="$TARGET" serve.draft="$DRAFT" serve.port=0 decode.device=auto serve.default_mode=strict \
    run.threads="${SERVE_THREADS:-2}" ${SERVE_ARGS:-} >"$OUT/server.log" 2>&1 &
pid=$!
stop_server() {
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" && echo "server stopped (exit 0)" || echo "server exit code $?"
  fi
}
trap stop_server EXIT

port=""
for _ in $(seq 1 600); do
  port="$(sed -n 's|^serving on http://127.0.0.1:\([0-9]*\)$|\1|p' "$OUT/server.log" | head -1)"
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "serve_load.sh: no 'serving on' line in 60 s" >&2; cat "$OUT/server.log" >&2; exit 1; }
echo "server on port $port (pid $pid, log $OUT/server.log)"
python3 tools/load_test.py --url "http://127.0.0.1:$port" --data-dir "$DATA_DIR" --json "$OUT/load.json" "$@"
