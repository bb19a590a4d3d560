#!/usr/bin/env bash
# Reproduces the README's "Results" for one dataset (beauty or games) from the real data in
# ../shared/data: trains target_small and a CE draft_small, evaluates the target against
# most-popular on every test user, runs the decode benchmark and the strict-invariant check on
# every test user. Outputs: runs/<dataset>-{target,draft,eval,bench,invariant}/.
#   bash launch/results.sh beauty [stage ...]    stages: target draft eval bench self invariant auto
#                                                (default: all but self and auto)
# Beauty: target 2 + 2 epochs; Games: 1 epoch (measured times in the README).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ds="${1:?usage: launch/results.sh beauty|games [stage ...]}"
shift
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(target draft eval bench invariant)
case "$ds" in
  beauty) epochs=2; more_epochs=4; eval_every=200 ;;   # 2 epochs, then continued to 4 (see README)
  games) epochs=1; more_epochs=""; eval_every=245 ;;
  *) echo "unknown dataset '$ds' (beauty or games)" >&2; exit 2 ;;
esac
bash launch/build.sh >/dev/null
. launch/setup.sh
bin="${ATSPEED_BUILD_DIR:-build}/bin/atspeed"
threads="${ATSPEED_THREADS:-2}"
for stage in "${stages[@]}"; do
  echo "[results] $ds: $stage"
  case "$stage" in
    target)
      "$bin" train-target data="$ds" train.epochs="$epochs" train.eval_every="$eval_every" run.threads="$threads" \
        run.out_dir="runs/$ds-target"
      # Beauty: the 2-epoch run continued to 4 epochs (resume extends the cosine schedule; its lr
      # restarts from the middle of the 4-epoch curve).
      if [ -n "$more_epochs" ]; then
        "$bin" train-target data="$ds" train.epochs="$more_epochs" train.eval_every="$eval_every" train.resume=true \
          run.threads="$threads" run.out_dir="runs/$ds-target"
      fi ;;
    draft)
      "$bin" train-target model=draft_small data="$ds" train.epochs="$epochs" train.eval_every="$eval_every" \
        run.threads="$threads" run.out_dir="runs/$ds-draft" ;;
    eval)
      "$bin" eval data="$ds" ckpt="runs/$ds-target/best.h5" run.threads="$threads" run.out_dir="runs/$ds-eval" ;;
    bench)
      "$bin" bench decode data="$ds" run.threads="$threads" run.out_dir="runs/$ds-bench" \
        --target "runs/$ds-target/best.h5" --draft "runs/$ds-draft/best.h5" --users 200 --batch-sizes 1 8 \
        --ks 1 3 5 10 20 --json "runs/$ds-bench/bench_decode.json" ;;
    self)  # draft == target: strict accepts level 1 every round (SPEC §8); the upper bound of acceptance
      "$bin" bench decode data="$ds" run.threads="$threads" run.out_dir="runs/$ds-self" \
        --target "runs/$ds-target/best.h5" --draft "runs/$ds-target/best.h5" --users 200 --batch-sizes 1 \
        --ks 1 3 5 10 20 --methods target sampling strict relaxed --plot none \
        --json "runs/$ds-self/bench_decode.json" ;;
    invariant)
      "$bin" bench decode data="$ds" run.threads="$threads" run.out_dir="runs/$ds-invariant" \
        --target "runs/$ds-target/best.h5" --draft "runs/$ds-draft/best.h5" --users 0 --batch-sizes 16 \
        --ks 1 3 5 10 20 --draft-widths 0 40 --methods target strict --plot none \
        --json "runs/$ds-invariant/bench_decode.json" ;;
    auto)  # README "auto on this CPU": the quickstart pair of tools/gpu/prepare.sh, every test user
      target="${ATSPEED_AUTO_TARGET:-runs/gpu-kit/target/best.h5}" draft="${ATSPEED_AUTO_DRAFT:-runs/gpu-kit/draft/best.h5}"
      [ -f "$target" ] && [ -f "$draft" ] || { echo "no $target / $draft: run tools/gpu/prepare.sh first" >&2; exit 2; }
      "$bin" bench decode data="$ds" run.threads="$threads" run.out_dir="runs/$ds-auto" \
        decode.auto.cache_dir="runs/$ds-auto/plans" --target "$target" --draft "$draft" --users 0 \
        --batch-sizes 1 8 --ks 1 3 5 10 20 --methods target strict auto --plot none \
        --json "runs/$ds-auto/bench_decode.json" ;;
    *) echo "unknown stage '$stage'" >&2; exit 2 ;;
  esac
done
