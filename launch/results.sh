#!/usr/bin/env bash
# Reproduces the README's "Results" for one dataset (beauty or games) from the real data in
# ../shared/data: trains target_small and a CE draft_small, evaluates the target against
# most-popular on every test user, runs the decode benchmark and the strict-invariant check on
# every test user. Outputs: runs/<dataset>-{target,draft,eval,bench,invariant}/.
#   bash launch/results.sh beauty [stage ...]    stages: target draft eval bench self invariant auto
#                                                train_bench deep deep_draft deep_eval deep_forward deep_bench
#                                                draft128 draft256 (issue 18: CE drafts of hidden 128 and 256)
#                                                (default: target draft eval bench invariant)
# Targets train one-pass (data.train_samples=one_pass), with early stopping on the validation loss:
# Beauty at most 12 epochs, Games at most 4 (the compute budget; measured times in the README).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ds="${1:?usage: launch/results.sh beauty|games [stage ...]}"
shift
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(target draft eval bench invariant)
case "$ds" in
  beauty) epochs=12; deep_epochs=8 ;;
  games) epochs=4; deep_epochs=3 ;;
  *) echo "unknown dataset '$ds' (beauty or games)" >&2; exit 2 ;;
esac
# ATSPEED_BIN: run this binary as is (e.g. a copy, so rebuilding during a long chain changes nothing).
if [ -z "${ATSPEED_BIN:-}" ]; then bash launch/build.sh >/dev/null; fi
. launch/setup.sh
bin="${ATSPEED_BIN:-${ATSPEED_BUILD_DIR:-build}/bin/atspeed}"
threads="${ATSPEED_THREADS:-2}"
# ATSPEED_RESUME=1 (any non-empty value): continue interrupted training stages from their last.h5.
resume=false
[ -n "${ATSPEED_RESUME:-}" ] && resume=true
for stage in "${stages[@]}"; do
  echo "[results] $ds: $stage"
  case "$stage" in
    target)  # resumable: rerun the stage with ATSPEED_RESUME=1 after an interruption
      "$bin" train-target data="$ds" train.epochs="$epochs" run.threads="$threads" run.out_dir="runs/$ds-target" \
        train.resume="$resume" ;;
    draft)
      "$bin" train-target model=draft_small data="$ds" train.epochs="$epochs" run.threads="$threads" \
        run.out_dir="runs/$ds-draft" train.resume="$resume" ;;
    draft128|draft256)  # issue 18 capacity study: CE drafts of hidden 128 and 256 beside draft_small's 64
      h="${stage#draft}"
      "$bin" train-target model="draft_h$h" data="$ds" train.epochs="$epochs" run.threads="$threads" \
        run.out_dir="runs/$ds-draft-h$h" train.resume="$resume" ;;
    train_bench)  # README "Training throughput": per-prefix rows against one-pass rows, side by side
      "$bin" bench train model=target_small data="$ds" run.threads="$threads" run.out_dir="runs/$ds-train-bench" \
        train.global_batch=1024 train.micro_batch=16 --steps 8 --warmup 2 ;;
    deep)  # the 24-layer target_deep (README "A deep target")
      "$bin" train-target model=target_deep data="$ds" train.epochs="$deep_epochs" run.threads="$threads" \
        run.out_dir="runs/$ds-deep" train.resume="$resume" ;;
    deep_draft)  # its 1-layer CE draft
      "$bin" train-target model=draft_shallow data="$ds" train.epochs="$deep_epochs" run.threads="$threads" \
        run.out_dir="runs/$ds-deep-draft" train.resume="$resume" ;;
    deep_eval)
      "$bin" eval data="$ds" ckpt="runs/$ds-deep/best.h5" run.threads="$threads" run.out_dir="runs/$ds-deep-eval" ;;
    deep_forward)  # forward cost against new tokens: target_deep vs its 1-layer draft_shallow
      "$bin" bench forward run.threads="$threads" run.out_dir="runs/$ds-deep-forward" \
        --models target_deep draft_shallow target_small draft_small --ns 1 5 20 40 80 120 200 \
        --json "runs/$ds-deep-forward/bench_forward.json" ;;
    deep_bench)
      "$bin" bench decode data="$ds" run.threads="$threads" run.out_dir="runs/$ds-deep-bench" \
        decode.auto.cache_dir="runs/$ds-deep-bench/plans" --target "runs/$ds-deep/best.h5" \
        --draft "runs/$ds-deep-draft/best.h5" --users 100 --batch-sizes 1 8 --ks 1 3 5 10 20 \
        --methods target sampling strict relaxed auto --json "runs/$ds-deep-bench/bench_decode.json" ;;
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
