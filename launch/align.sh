#!/usr/bin/env bash
# Does alignment pay? (issue 6, README "Draft alignment results"). For one dataset: the target's
# teacher files, drafts trained with each objective from the same starting point for the same
# budget, and `bench decode` of each draft on the same test users. Every stage is resumable: rerun
# the same command after an interruption and finished runs are skipped, interrupted ones resume
# from their last checkpoint.
#   bash launch/align.sh beauty [stage ...]    stages: teacher drafts sweep variants bench table timing
#                                              paper paper_grid (issue 18: the paper's protocol)
#                                              (default: teacher drafts sweep variants bench table)
# Inputs: runs/<ds>-target/best.h5 (target) and runs/<ds>-draft/best.h5 (the CE draft every run
# starts from), both from launch/results.sh. Outputs: runs/<ds>-teacher/, runs/align/<ds>-<obj>-a<alpha>-e<epochs>/.
# Environment: ATSPEED_ALIGN_EPOCHS (default 1, the README's budget), ATSPEED_ALIGN_SWEEP_EPOCHS (the alpha sweep's smaller
# budget, default 1), ATSPEED_ALIGN_LR (default 5e-4), ATSPEED_ALIGN_USERS (bench users, default 1000),
# ATSPEED_ALIGN_OBJECTIVES (default "ce atspeed_s atspeed_r wordkd tvdkd seqkd"),
# ATSPEED_ALIGN_SWEEP (objectives of the alpha sweep, default "atspeed_s atspeed_r"),
# ATSPEED_ALIGN_STEPS (> 0: a budget of this many optimizer steps instead of epochs; run directories
# then end in -s<steps>), ATSPEED_ALIGN_TEACHER (offline: the teacher files of the teacher stage,
# default; online: the target computes the teacher inside the training loop, for datasets whose
# teacher files would not fit the machine's time or disk), ATSPEED_THREADS (default 2; threads per rank),
# ATSPEED_ALIGN_TEACHER_RANKS (default 1; > 1: the teacher stage runs under mpirun -np <ranks>, each
# rank writing its share of the part files).
# The paper's protocol (issue 18; stages paper, paper_grid): every draft size of ATSPEED_ALIGN_SIZES
# (default "64 128 256": the CE drafts runs/<ds>-draft, runs/<ds>-draft-h128, runs/<ds>-draft-h256 of
# launch/results.sh) trained with each objective of ATSPEED_ALIGN_PAPER_OBJECTIVES (default "ce seqkd
# atspeed_r atspeed_s_norm") at alpha 0.7, weight decay 0.1, lr 1e-3 cosine with configs/train/draft.yaml's
# warm-up, 20 epochs with early stopping on the validation loss (patience 5); paper_grid: for the
# first size, alpha x weight decay for ATSPEED_ALIGN_GRID_OBJECTIVE (default seqkd, the objective that
# met the goal on both datasets, at half atspeed_r's cost per step) over ATSPEED_ALIGN_GRID_ALPHAS
# (default "0.7 0.5 0.3 0.1") x ATSPEED_ALIGN_GRID_WDS (default "0.1 0.01"), then a from-scratch start
# (ce and the grid objective, alpha 0.7, weight decay 0.1) beside the CE start. Run directories:
# runs/align/<ds>-h<size>-<obj>[-scratch]-a<alpha>-wd<wd>-e20.
# Parallel workers: every draft run and every bench takes a lock (flock on <dir>.lock, released when
# its process exits), so the same command started twice (e.g. with ATSPEED_THREADS=1 on a 2-core
# machine) works on two runs at once; a worker skips a run another one holds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ds="${1:?usage: launch/align.sh beauty|games [stage ...]}"
shift
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(teacher drafts sweep variants bench table)
# ATSPEED_BIN: run this binary as is (e.g. a copy, so rebuilding during a long chain changes nothing).
if [ -z "${ATSPEED_BIN:-}" ]; then bash launch/build.sh >/dev/null; fi
. launch/setup.sh
bin="${ATSPEED_BIN:-${ATSPEED_BUILD_DIR:-build}/bin/atspeed}"
threads="${ATSPEED_THREADS:-2}"
epochs="${ATSPEED_ALIGN_EPOCHS:-1}"
sweep_epochs="${ATSPEED_ALIGN_SWEEP_EPOCHS:-1}"
# Fine-tuning a trained draft: a shorter warm-up and half the from-scratch learning rate (the 200-step
# warm-up of configs/train/draft.yaml is longer than a 1-epoch Beauty run of 75 steps).
lr="${ATSPEED_ALIGN_LR:-5.0e-4}"
users="${ATSPEED_ALIGN_USERS:-1000}"
steps="${ATSPEED_ALIGN_STEPS:-0}"
teacher_mode="${ATSPEED_ALIGN_TEACHER:-offline}"
teacher_ranks="${ATSPEED_ALIGN_TEACHER_RANKS:-1}"
case "$teacher_ranks" in ''|*[!0-9]*|0*|?????*) echo "ATSPEED_ALIGN_TEACHER_RANKS: a positive integer below 10000, not '$teacher_ranks'" >&2; exit 2 ;; esac
case "$teacher_mode" in offline|online) ;; *) echo "ATSPEED_ALIGN_TEACHER: offline or online, not '$teacher_mode'" >&2; exit 2 ;; esac
objectives=(${ATSPEED_ALIGN_OBJECTIVES:-ce atspeed_s atspeed_r wordkd tvdkd seqkd})
sweep=(${ATSPEED_ALIGN_SWEEP:-atspeed_s atspeed_r})
target="runs/$ds-target/best.h5"
init="runs/$ds-draft/best.h5"
teacher="runs/$ds-teacher"
# Exits with a hint when checkpoint $1 (runs/<name>/best.h5, from `launch/results.sh $ds $2`) is missing;
# where the repo commits that checkpoint (docs/results/<name>/best.h5: the Games target and hidden-64/128/256 CE
# starts, so that runs of different sessions and hosts share them), the hint is to copy it.
need_checkpoint() {
  [ -f "$1" ] && return
  local committed="docs/results/${1#runs/}"
  if [ -f "$committed" ]; then
    echo "missing $1: copy the committed one (mkdir -p $(dirname "$1") && cp $committed $1) or run 'bash launch/results.sh $ds $2'" >&2
  else
    echo "missing $1: run 'bash launch/results.sh $ds $2' first" >&2
  fi
  exit 2
}
need_checkpoint "$target" target
# The hidden-64 CE draft is the start of the teacher-free stages' runs only; the paper stages check
# their own size's start in train_paper.
need_init() {
  need_checkpoint "$init" draft
}

# Takes the lock of run directory $1 on file descriptor 9 (held until the caller's subshell or the
# script exits); false when another worker holds it.
lock_run() {
  mkdir -p "$(dirname "$1")"
  exec 9>"$1.lock"
  flock -n 9
}

# The offline teacher's part files are read in the training's shuffled order, one random read per
# sample: from a cold page cache an epoch of an objective that reads the teacher's logits is disk-bound
# (Games, 13 GB of part files on the 2-core host: 26-41 items/s against 100-120 cached, at 1 thread).
# One sequential read of all of them (about 50 s there; 12 s when already cached) warms the cache
# before each such run (SeqKD reads only the beam rows), when they fit in the available memory with
# 4 GiB to spare. The kernel may still drop them during a long run (seen there after about half an
# hour, with memory free): `vmtouch -l -d <teacher dir>` keeps them resident (README, Games protocol).
# $1: the run's objective; nothing to do unless it reads the logits (Objective::needs_teacher_logits,
# train/objectives.h: every objective but ce and seqkd).
warm_teacher() {
  case "$1" in ce|seqkd) return 0 ;; esac
  [ "$teacher_mode" = offline ] && [ -d "$teacher/teacher" ] || return 0
  local kb avail
  kb=$(du -sk "$teacher/teacher" | cut -f1)
  avail=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
  if [ -n "$avail" ] && [ "$kb" -lt $((avail - 4 * 1024 * 1024)) ]; then
    echo "[align] reading $teacher/teacher ($((kb / 1024)) MiB) once into the page cache"
    find "$teacher/teacher" -type f -name '*.h5' -exec cat {} + > /dev/null
  fi
}

# One draft: objective $1, alpha $2, epochs $3, then optional: a name tag $4 and extra overrides.
# Skipped when done, resumed when interrupted.
train_draft() {
  local obj="$1" alpha="$2" ep="$3" tag="${4:-}" dir
  need_init
  local budget="e$ep" teacher_arg="$teacher/teacher"
  [ "$steps" -gt 0 ] && budget="s$steps"
  [ "$teacher_mode" = online ] && teacher_arg=""
  dir="runs/align/$ds-$obj${tag:+-$tag}-a$alpha-$budget"
  shift 3
  if [ $# -gt 0 ]; then shift; fi
  if ! lock_run "$dir"; then echo "[align] $dir: another worker is training it, skipped"; return; fi
  if [ -f "$dir/done" ]; then echo "[align] $dir: done"; return; fi
  local resume=false
  [ -f "$dir/last.h5" ] && resume=true
  warm_teacher "$obj"
  echo "[align] $dir: training (resume=$resume)"
  "$bin" train-draft data="$ds" align.objective="$obj" align.alpha="$alpha" align.teacher="$teacher_arg" \
    align.target="$target" align.init="$init" train.epochs="$ep" train.max_steps="$steps" train.lr="$lr" train.warmup_steps=20 train.resume="$resume" \
    run.threads="$threads" run.out_dir="$dir" "$@"
  touch "$dir/done"
}

# One draft of the paper's protocol: size $1, objective $2, alpha $3, weight decay $4, start $5 (ce: the
# size's CE draft; scratch: random init of the same shape). Skipped when done, resumed when interrupted.
sizes=(${ATSPEED_ALIGN_SIZES:-64 128 256})
paper_objectives=(${ATSPEED_ALIGN_PAPER_OBJECTIVES:-ce seqkd atspeed_r atspeed_s_norm})
grid_objective="${ATSPEED_ALIGN_GRID_OBJECTIVE:-seqkd}"
grid_alphas=(${ATSPEED_ALIGN_GRID_ALPHAS:-0.7 0.5 0.3 0.1})
grid_wds=(${ATSPEED_ALIGN_GRID_WDS:-0.1 0.01})
train_paper() {
  local size="$1" obj="$2" alpha="$3" wd="$4" start="$5" init shape=()
  init="runs/$ds-draft-h$size/best.h5"
  [ "$size" = 64 ] && init="runs/$ds-draft/best.h5"
  need_checkpoint "$init" "draft${size#64}"
  local tag=""
  [ "$start" = scratch ] && tag="-scratch"
  local dir="runs/align/$ds-h$size-$obj$tag-a$alpha-wd$wd-e20"
  if ! lock_run "$dir"; then echo "[align] $dir: another worker is training it, skipped"; return; fi
  if [ -f "$dir/done" ]; then echo "[align] $dir: done"; return; fi
  local resume=false
  [ -f "$dir/last.h5" ] && resume=true
  if [ "$start" = scratch ]; then
    # The CE draft's shape without its weights: its preset (draft_small is hidden 64).
    local preset="draft_h$size"
    [ "$size" = 64 ] && preset=draft_small
    shape=(model="$preset" align.init=)
  else
    shape=(align.init="$init")
  fi
  warm_teacher "$obj"
  echo "[align] $dir: training (resume=$resume)"
  local teacher_arg="$teacher/teacher"
  [ "$teacher_mode" = online ] && teacher_arg=""
  "$bin" train-draft data="$ds" align.objective="$obj" align.alpha="$alpha" align.teacher="$teacher_arg" \
    align.target="$target" "${shape[@]}" train.epochs=20 train.lr=1.0e-3 train.weight_decay="$wd" \
    train.resume="$resume" run.threads="$threads" run.out_dir="$dir"
  touch "$dir/done"
}

for stage in "${stages[@]}"; do
  echo "[align] $ds: $stage"
  case "$stage" in
    teacher)  # resumable by itself: finished part files are kept
      launcher=()
      [ "$teacher_ranks" -gt 1 ] && launcher=(mpirun -np "$teacher_ranks")
      "${launcher[@]}" "$bin" teacher data="$ds" teacher.target="$target" run.threads="$threads" run.out_dir="$teacher" ;;
    drafts)
      for obj in "${objectives[@]}"; do train_draft "$obj" 0.7 "$epochs"; done ;;
    sweep)
      for obj in "${sweep[@]}"; do for a in 0.1 0.3 0.5 0.7; do train_draft "$obj" "$a" "$sweep_epochs"; done; done ;;
    variants)  # AtSpeed-S with the reference script's saturating softmax temperature (SPEC §4.4, §7.16)
      train_draft atspeed_s 0.7 "$sweep_epochs" cs-t0.001 align.constrained_loss=true \
        align.constrained_softmax=true align.temperature=0.001 ;;
    paper)  # issue 18: sizes x objectives, the paper's protocol
      for size in "${sizes[@]}"; do for obj in "${paper_objectives[@]}"; do
        train_paper "$size" "$obj" 0.7 0.1 ce
      done; done ;;
    paper_grid)  # issue 18: alpha x weight decay for the grid objective, and a from-scratch start, on the first size
      for wd in "${grid_wds[@]}"; do for a in "${grid_alphas[@]}"; do
        train_paper "${sizes[0]}" "$grid_objective" "$a" "$wd" ce
      done; done
      for obj in "$grid_objective" ce; do train_paper "${sizes[0]}" "$obj" 0.7 0.1 scratch; done ;;
    timing)  # offline vs online teacher on the same start and objective: seconds per training step
      need_init
      mkdir -p runs/align-timing
      for mode in offline online; do
        teacher_dir=""
        [ "$mode" = offline ] && teacher_dir="$teacher/teacher"
        rm -rf "runs/align-timing/$ds-$mode"
        t0=$(date +%s.%N)
        "$bin" train-draft data="$ds" align.objective=atspeed_s align.alpha=0.7 align.teacher="$teacher_dir" \
          align.target="$target" align.init="$init" train.max_steps=10 train.max_valid_samples=16 train.lr="$lr" \
          train.warmup_steps=2 run.threads="$threads" run.out_dir="runs/align-timing/$ds-$mode" \
          > "runs/align-timing/$ds-$mode.log" 2>&1
        t1=$(date +%s.%N)
        python3 -c "import json,sys; t=float(sys.argv[2])-float(sys.argv[1]); \
l=[json.loads(x) for x in open(sys.argv[3]) if '\"loss\"' in x]; \
print(f'[align] {sys.argv[4]} teacher: 10 steps of 256 in {t:.1f} s ({t/10:.2f} s per step, start-up included), last loss {l[-1][\"loss\"]:.4f}')" \
          "$t0" "$t1" "runs/align-timing/$ds-$mode/metrics.jsonl" "$mode"
      done ;;
    bench)  # the starting CE draft and every finished draft, on the same seeded test users
      for dir in "runs/$ds-draft" runs/align/"$ds"-*; do
        [ -f "$dir/best.h5" ] || continue
        [ "$dir" = "runs/$ds-draft" ] || [ -f "$dir/done" ] || continue
        json="$dir/bench_align.json"
        if ! lock_run "$dir/bench_align"; then echo "[align] $json: another worker is running it, skipped"; continue; fi
        if [ -f "$json" ]; then echo "[align] $json: done"; continue; fi
        echo "[align] bench $dir"
        "$bin" bench decode data="$ds" run.threads="$threads" run.out_dir="$dir" \
          --target "$target" --draft "$dir/best.h5" --users "$users" --batch-sizes 16 \
          --ks 1 3 5 10 20 --draft-widths 40 --methods target sampling strict relaxed --plot none \
          --json "$json.tmp" > "$dir/bench_align.log" 2>&1
        mv "$json.tmp" "$json"
      done ;;
    table)
      python3 tools/align_table.py "runs/$ds-draft/bench_align.json" runs/align/"$ds"-*/bench_align.json ;;
    *) echo "unknown stage '$stage'" >&2; exit 2 ;;
  esac
done
