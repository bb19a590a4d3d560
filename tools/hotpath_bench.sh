#!/usr/bin/env bash
# The README's "Decode hot path" figures (issue 19): forward cost at n new tokens (bench forward) and
# the decode time split, copies and bytes per forward (bench decode) on the Beauty target_small pair
# and the quickstart pair, K = 1, 5, 20, batch 1 and 8, 100 seeded test users, 2 threads.
#   bash tools/hotpath_bench.sh            this tree's build (after), outputs in runs/hotpath/after
#   bash tools/hotpath_bench.sh --before   commit d19a9a0 (before the lean path) with only the
#                                          measurement of tools/hotpath_before.patch (forward time and
#                                          bytes copied), built in /tmp/atspeed-before; runs/hotpath/before
#   ATSPEED_BIN=build/bin/atspeed bash tools/hotpath_bench.sh   after, with that binary as is (no build)
# Inputs: runs/beauty-target, runs/beauty-draft (launch/results.sh beauty target draft) and
# runs/gpu-kit/{target,draft} (tools/gpu/prepare.sh's quickstart pair). Run it on an idle machine:
# both variants in a row, nothing else running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
variant=after
bin="${ATSPEED_BUILD_DIR:-build}/bin/atspeed"
if [ "${1:-}" = "--before" ]; then
  variant=before
  tree=/tmp/atspeed-before
  if [ ! -x "$tree/build/bin/atspeed" ]; then
    rm -rf "$tree"
    git worktree add -f "$tree" d19a9a0 >/dev/null
    git -C "$tree" apply "$root/tools/hotpath_before.patch"
    cp configs/model/target_llama1b.yaml "$tree/configs/model/"
    ( cd "$tree" && ATSPEED_BUILD_DIR=build bash launch/build.sh >/dev/null )
  fi
  bin="$tree/build/bin/atspeed"
elif [ -n "${ATSPEED_BIN:-}" ]; then
  bin="$ATSPEED_BIN"  # this binary as is (no rebuild, e.g. while another build is running)
else
  bash launch/build.sh >/dev/null
fi
. launch/setup.sh
# ATSPEED_HOTPATH_ROUND=r: a repeated round into runs/hotpath/<variant>-r<r> (tools/hotpath_table.py
# takes the median over rounds).
out="runs/hotpath/$variant${ATSPEED_HOTPATH_ROUND:+-r$ATSPEED_HOTPATH_ROUND}"
mkdir -p "$out"
"$bin" bench forward run.threads=2 run.out_dir="$out" --models target_small quickstart_target target_deep draft_small \
  quickstart_draft draft_shallow --ns 1 5 20 40 120 --reps 15 --json "$out/forward.json" | tee "$out/forward.txt"
"$bin" bench forward run.threads=2 run.out_dir="$out" --models target_llama1b draft_llama68m --dtype float32 --ns 1 5 20 40 --reps 5 \
  --json "$out/forward_1b.json" | tee "$out/forward_1b.txt"
project=()
[ $variant = after ] && project=(--project docs/gpu/2026-11-30-h200-bench-forward.json)
for pair in beauty:runs/beauty-target/best.h5:runs/beauty-draft/best.h5 quickstart:runs/gpu-kit/target/best.h5:runs/gpu-kit/draft/best.h5; do
  IFS=: read -r name target draft <<<"$pair"
  if [ ! -f "$target" ] || [ ! -f "$draft" ]; then
    echo "hotpath_bench: skipping the $name pair: $target or $draft is missing (see Inputs above)" >&2
    continue
  fi
  "$bin" bench decode data=beauty run.threads=2 run.out_dir="$out/$name" --target "$target" --draft "$draft" \
    --users 100 --ks 1 5 20 --batch-sizes 1 8 --methods target strict --plot none "${project[@]}" \
    --json "$out/decode_$name.json" | tee "$out/decode_$name.txt"
done
