#!/usr/bin/env bash
# Makes (idempotently) the Python venv that the LC-Rec fixture tools run in, and prints its path:
#   tools/make_lcrec_fixture.py   regenerates tests/data/lcrec/
#   tools/make_lcrec_search_fixture.py  adds its search fixture (data/, target/, draft/, expected_search.json)
#   tools/merge_lcrec_lora.py     merges an adapter the way the LC-Rec reference loads it
#   tools/check_hf_export.py      checks an HF export directory against tests/data/lcrec/
#
#     venv="$(bash tools/lcrec_fixture_venv.sh)"
#     "$venv/bin/python" tools/make_lcrec_fixture.py
#
# The venv lives outside the clone, next to the torch venv of launch/setup.sh:
#   ${ATSPEED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/atspeed}/lcrec-fixtures
# (override the whole path with ATSPEED_LCREC_VENV). It pins the versions of the LC-Rec reference
# implementation (transformers 4.41.0) and a peft of the same time, and installs no torch of its
# own: a .pth file appends the site-packages of launch/setup.sh's torch venv (made by it if missing)
# to sys.path, after the venv's own site-packages, so the venv's numpy<2 (transformers 4.41 predates
# numpy 2) shadows the torch venv's numpy 2.x while torch itself comes from there. transformers,
# peft and accelerate are installed with --no-deps so that pip never tries to fetch a torch wheel;
# their light dependencies are listed here explicitly.
# All progress goes to stderr; stdout is only the venv path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The pins. Changing any of them rebuilds the venv (the marker holds them).
pins_nodeps="transformers==4.41.0 peft==0.11.1 accelerate==0.30.1"
pins_deps="numpy==1.26.4 sentencepiece==0.2.0 safetensors==0.4.3 tokenizers==0.19.1
  huggingface-hub==0.23.4 protobuf==4.25.3 regex==2024.5.15 pyyaml==6.0.1
  requests tqdm psutil packaging filelock fsspec typing-extensions"

# The torch venv (installed by launch/setup.sh when missing; its output goes to stderr).
torch_venv="$(
  exec 3>&1 1>&2
  # shellcheck source=../launch/setup.sh
  . "$root/launch/setup.sh"
  echo "$ATSPEED_TORCH_VENV" >&3
)"
torch_site="$(ls -d "$torch_venv"/lib/python3*/site-packages | head -n 1)"

: "${ATSPEED_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/atspeed}"
: "${ATSPEED_LCREC_VENV:=$ATSPEED_CACHE/lcrec-fixtures}"
venv="$ATSPEED_LCREC_VENV"
marker="$venv/.atspeed-complete"
# shellcheck disable=SC2086
want="$(echo $pins_nodeps $pins_deps torch-site="$torch_site")"  # one line, spaces squeezed

if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$want" ]; then
  mkdir -p "$(dirname "$venv")"
  exec {lock_fd}>"$venv.lock"
  flock "$lock_fd"
  if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$want" ]; then
    echo "[lcrec-venv] making $venv" >&2
    rm -rf "$venv"
    # The torch venv's interpreter (same Python minor version as its site-packages).
    base_python="$(readlink -f "$torch_venv/bin/python")"
    "$base_python" -m venv "$venv"
    pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input)
    # shellcheck disable=SC2086
    "${pip[@]}" $pins_deps >&2
    # shellcheck disable=SC2086
    "${pip[@]}" --no-deps $pins_nodeps >&2
    # Only now does torch become visible (pip above could not see, and so never touched, the torch
    # venv's numpy). A .pth line is appended to sys.path after this venv's own site-packages.
    site="$(ls -d "$venv"/lib/python3*/site-packages | head -n 1)"
    echo "$torch_site" > "$site/zz-atspeed-torch.pth"
    "$venv/bin/python" - >&2 <<'EOF'
import numpy, torch, transformers, peft, sentencepiece, safetensors
assert numpy.__version__.startswith("1."), numpy.__file__
print("[lcrec-venv] torch", torch.__version__, "numpy", numpy.__version__, "transformers",
      transformers.__version__, "peft", peft.__version__, "sentencepiece", sentencepiece.__version__)
EOF
    echo "$want" > "$marker"
  fi
  flock -u "$lock_fd"
fi
echo "$venv"
