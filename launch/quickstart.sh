#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, then runs the pipeline on a dataset
# (the real Amazon Beauty data from ../shared/data when present, else a generated synthetic set).
# Stages that exist so far: data statistics and the BLAS check. Training, teacher data, eval and the
# decode benchmark join here as they land (see README "Status").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash launch/build.sh
. launch/setup.sh
bin="${ATSPEED_BUILD_DIR:-build}/bin/atspeed"
out="${ATSPEED_QUICKSTART_DIR:-runs/quickstart}"
mkdir -p "$out"
echo "[quickstart] 1/2 BLAS check (fp32 matmul GFLOP/s)"
"$bin" bench matmul --sizes 512 1024 --json "$out/bench_matmul.json" run.out_dir="$out"
if "$bin" data --help >/dev/null 2>&1; then
  data_dir="../shared/data/amazon/beauty"
  if [ ! -d "$data_dir" ]; then
    data_dir="$out/synthetic"
    echo "[quickstart] ../shared/data is absent: generating a synthetic dataset in $data_dir"
    "$bin" data synth --out "$data_dir"
  fi
  echo "[quickstart] 2/2 dataset statistics of $data_dir"
  "$bin" data stats "$data_dir"
fi
echo "[quickstart] done. Not yet available (later milestones): train-target, teacher, train-draft, eval, bench decode."
