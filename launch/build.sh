#!/usr/bin/env bash
# Configures and builds atspeed (Release, Ninja, ccache, -j2) into ${ATSPEED_BUILD_DIR:-build}.
# Sources launch/setup.sh first, so it installs whatever is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. launch/setup.sh
: "${ATSPEED_BUILD_DIR:=build}"
: "${ATSPEED_JOBS:=2}"
# ccache with precompiled headers needs these sloppiness settings; the cache is per user and shared
# by every clone on the machine.
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_BASEDIR="$PWD"
export CCACHE_NOHASHDIR=1
if [ ! -f "$ATSPEED_BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$ATSPEED_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DATSPEED_TORCH_DIR="$ATSPEED_TORCH_DIR" \
      ${ATSPEED_CMAKE_ARGS:-} >"$ATSPEED_BUILD_DIR.configure.log" 2>&1 \
    || { cat "$ATSPEED_BUILD_DIR.configure.log"; exit 1; }
fi
echo "[build] building in $ATSPEED_BUILD_DIR with -j$ATSPEED_JOBS"
cmake --build "$ATSPEED_BUILD_DIR" -j"$ATSPEED_JOBS"
