#!/usr/bin/env bash
# Two launch/setup.sh runs at once on the same (new) torch venv both succeed and leave one complete
# venv (issue 14: a second setup used to delete the venv the first was still installing into).
# The "torch" installed is a tiny local wheel (ATSPEED_TORCH_PIP_ARGS), so the test needs no network.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp" <<'PY'
import sys, zipfile
d = sys.argv[1]
with zipfile.ZipFile(f"{d}/torch-0.0.1-py3-none-any.whl", "w") as z:
    z.writestr("torch/__init__.py", "__version__ = '0.0.1'\n")
    z.writestr("torch-0.0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: torch\nVersion: 0.0.1\n")
    z.writestr("torch-0.0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("torch-0.0.1.dist-info/RECORD", "")
PY
export ATSPEED_TORCH_VENV="$tmp/venv" ATSPEED_TORCH_PIP_ARGS="--no-index $tmp/torch-0.0.1-py3-none-any.whl"
run() { bash -c '. "$1/launch/setup.sh" && echo "TORCH_DIR=$ATSPEED_TORCH_DIR"' _ "$repo" >"$tmp/$1.log" 2>&1; }
run a & pa=$!
run b & pb=$!
ok=1
wait $pa || { echo "setup a failed:"; cat "$tmp/a.log"; ok=0; }
wait $pb || { echo "setup b failed:"; cat "$tmp/b.log"; ok=0; }
[ $ok = 1 ] || exit 1
for s in a b; do
  grep -q "^TORCH_DIR=$tmp/venv/lib/python3.*/site-packages/torch$" "$tmp/$s.log" || { echo "setup $s: no torch dir"; cat "$tmp/$s.log"; exit 1; }
done
[ -f "$tmp/venv/.atspeed-complete" ] || { echo "no completion marker"; exit 1; }
[ "$("$tmp/venv/bin/python" -c 'import torch; print(torch.__version__)')" = 0.0.1 ] || { echo "venv has no torch"; exit 1; }
# Exactly one of them installed; the other waited or found it done.
n=$(cat "$tmp/a.log" "$tmp/b.log" | grep -c "^\[setup\] installing --no-index" || true)
[ "$n" = 1 ] || { echo "expected one install, saw $n"; cat "$tmp/a.log" "$tmp/b.log"; exit 1; }
echo "two concurrent setups: both succeeded, one installed ($(grep -l waiting "$tmp"/a.log "$tmp"/b.log | wc -l) waited)"
