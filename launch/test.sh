#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test with ctest
# (unit + integration, MPI under mpirun -np 2 and -np 3, and *_CUDA tests, which skip without a GPU).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)
bash launch/build.sh
. launch/setup.sh
echo "[test] running ctest"
ctest --test-dir "${ATSPEED_BUILD_DIR:-build}" --output-on-failure --timeout 1800
echo "[test] done in $(( $(date +%s) - start )) s"
