#!/usr/bin/env bash
# Installs everything atspeed needs, idempotently, and quietly when it is already done:
#   1. the Debian packages listed in launch/deps.env (apt-get, only those missing);
#   2. the pinned PyPI torch wheel in a venv outside the clone, in a per-user cache directory keyed
#      by the version, so every clone on the machine reuses it:
#        ${ATSPEED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/atspeed}/torch-<version>
#      (override the whole path with ATSPEED_TORCH_VENV).
# Source it (`. launch/setup.sh`) to get ATSPEED_TORCH_VENV, ATSPEED_TORCH_DIR and ATSPEED_PYTHON
# exported, or run it to just install.
set -euo pipefail
_atspeed_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deps.env
. "$_atspeed_root/launch/deps.env"

_atspeed_sudo=""
if [ "$(id -u)" != 0 ]; then _atspeed_sudo="sudo"; fi

_atspeed_missing=""
for p in $ATSPEED_APT_PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    _atspeed_missing="$_atspeed_missing $p"
  fi
done
if [ -n "$_atspeed_missing" ]; then
  echo "[setup] installing Debian packages:$_atspeed_missing"
  $_atspeed_sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $_atspeed_sudo apt-get install -y -q --no-install-recommends $_atspeed_missing >/dev/null
fi

: "${ATSPEED_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/atspeed}"
: "${ATSPEED_TORCH_VENV:=$ATSPEED_CACHE/torch-$ATSPEED_TORCH_VERSION}"
# What pip installs into the venv (tests point it at a small local wheel).
: "${ATSPEED_TORCH_PIP_ARGS:=torch==$ATSPEED_TORCH_VERSION numpy}"
if [ ! -f "$ATSPEED_TORCH_VENV/.atspeed-complete" ]; then
  mkdir -p "$(dirname "$ATSPEED_TORCH_VENV")"
  # Several clones (or CI jobs) may set up at once: one installs while the others wait on the lock,
  # then find the completion marker. Without it a second setup deleted the venv the first one was
  # still installing into.
  exec {_atspeed_lock_fd}>"$ATSPEED_TORCH_VENV.lock"
  if ! flock -n "$_atspeed_lock_fd"; then
    echo "[setup] waiting for another setup installing $ATSPEED_TORCH_VENV"
    flock "$_atspeed_lock_fd"
  fi
  if [ ! -f "$ATSPEED_TORCH_VENV/.atspeed-complete" ]; then
    echo "[setup] installing $ATSPEED_TORCH_PIP_ARGS into $ATSPEED_TORCH_VENV (one time, ~4 GB)"
    # Prefer Debian's interpreter when present: a pyenv/conda python on PATH works too.
    _atspeed_python="$(command -v python3)"
    rm -rf "$ATSPEED_TORCH_VENV"   # a half-made venv of an interrupted setup
    "$_atspeed_python" -m venv "$ATSPEED_TORCH_VENV"
    # shellcheck disable=SC2086
    "$ATSPEED_TORCH_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input $ATSPEED_TORCH_PIP_ARGS
    touch "$ATSPEED_TORCH_VENV/.atspeed-complete"
  fi
  flock -u "$_atspeed_lock_fd"
  exec {_atspeed_lock_fd}>&-
fi
ATSPEED_PYTHON="$ATSPEED_TORCH_VENV/bin/python"
ATSPEED_TORCH_DIR="$(ls -d "$ATSPEED_TORCH_VENV"/lib/python3*/site-packages/torch | head -n 1)"
export ATSPEED_CACHE ATSPEED_TORCH_VENV ATSPEED_PYTHON ATSPEED_TORCH_DIR
# OpenMPI refuses to run as root and to oversubscribe cores unless told; tests and the quickstart
# run as root on 2-core machines.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Containers often forbid the cross-memory-attach syscalls OpenMPI's shared memory uses.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
