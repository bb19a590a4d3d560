#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, then runs the whole pipeline with the
# tiny quickstart preset (minutes on 2 cores):
#   data (Amazon Beauty from ../shared/data when present, else a generated synthetic set)
#   -> train a target -> train a CE draft -> eval (Recall/NDCG vs most-popular) -> bench decode.
# Outputs go to runs/quickstart (ATSPEED_QUICKSTART_DIR). For real results use model=target_small
# (see README "Results").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash launch/build.sh
. launch/setup.sh
# matplotlib for the benchmark plot, into the same cached venv (idempotent).
"$ATSPEED_PYTHON" -c "import matplotlib" 2>/dev/null \
  || "$ATSPEED_TORCH_VENV/bin/pip" install -q --disable-pip-version-check --no-input $ATSPEED_PLOT_PACKAGES
bin="${ATSPEED_BUILD_DIR:-build}/bin/atspeed"
out="${ATSPEED_QUICKSTART_DIR:-runs/quickstart}"
mkdir -p "$out"
start=$(date +%s)
stage() { echo; echo "[quickstart] $1 ($(( $(date +%s) - start )) s)"; }

stage "1/6 BLAS check (fp32 matmul GFLOP/s)"
"$bin" bench matmul --sizes 512 1024 --json "$out/bench_matmul.json" run.out_dir="$out"

data=()
if [ -d ../shared/data/amazon/beauty ]; then
  stage "2/6 data: Amazon Beauty from ../shared/data"
  "$bin" data stats ../shared/data/amazon/beauty
else
  stage "2/6 data: ../shared/data is absent, generating a synthetic dataset"
  "$bin" data synth --out "$out/synthetic"
  data=(data=synthetic data.dir="$out/synthetic")
fi

stage "3/6 train the target (model=quickstart_target train=quickstart)"
"$bin" train-target "${data[@]}" model=quickstart_target train=quickstart run.out_dir="$out/target"

stage "4/6 train a CE draft (model=quickstart_draft train=quickstart)"
"$bin" train-target "${data[@]}" model=quickstart_draft train=quickstart run.out_dir="$out/draft"

stage "5/6 eval: Recall@K / NDCG@K of the target's beam search on every test user, beside most-popular and item transitions"
"$bin" eval "${data[@]}" ckpt="$out/target/best.h5" run.out_dir="$out/eval"

stage "6/6 bench decode: target beam search vs AtSpeed-S (strict), AtSpeed-R (relaxed) and auto, 100 test users"
# auto plans on 32 validation users (cached in $out/plans, so a rerun skips it).
"$bin" bench decode --target "$out/target/best.h5" --draft "$out/draft/best.h5" --users 100 --ks 1 5 20 \
  --batch-sizes 1 --methods target sampling strict relaxed auto --calib-users 32 --json "$out/bench_decode.json" \
  -- "${data[@]}" run.out_dir="$out" decode.auto.cache_dir="$out/plans"

stage "done: outputs in $out"
