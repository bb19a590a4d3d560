#!/usr/bin/env bash
# GPU kit, step 2 of 2 (issue 14): runs on the lent GPU machine from the repository root, with the
# .gpu/ that tools/gpu/prepare.sh filled carried along (device tool: command `bash tools/gpu/run.sh`,
# carry [".gpu"], timeout_s 420). At most 6 minutes, so that a rerun fits in a session's 15.
#
# Stages, each under its own timeout; a failing stage is recorded and the next one runs:
#   smoke   (<= 60 s) machine, driver, torch, the unpacked packages, ldd of every binary (a "not
#           found" falls back to building here), atspeed --version, bf16 matmul; writes
#           $OUT/smoke.json before anything else runs
#   tests   the *_CUDA tests (each on cpu and cuda), JUnit XML
#   bench   bench forward (opt-in, below), then bench decode on the carried quickstart pair (fp32 and
#           bf16, K 1/5/20, batch 1 and 8: the strict-identity check, the time split into target
#           forwards / draft forwards / rest, copies and bytes to the host per forward, and with
#           bench forward's JSON the projected speedup at the 7B/68M shapes), training tokens/s of
#           a target (target_small) and a draft (quickstart_draft) on the GPU
#   forward the paper's shapes (7B target, 68M draft) in bf16 through HF transformers
#           (tools/gpu/forward_cost.py): forward time against new tokens
#   table   a short summary, printed last and written to $OUT/summary.md
# Everything else (logs, JSON) goes into $OUT/results.tgz, refreshed after every stage so a run cut
# short still returns what it did.
#
# --dry   the CPU dry run (tools/gpu/dryrun.sh): device cpu, target_small shrunk to 2 layers, fewer
#         steps and users; GPU-only steps are skipped.
# ATSPEED_GPU_STAGES="smoke bench_forward ..." runs only the named stages: smoke tests decode_float32
# decode_bfloat16 train_target_small train_quickstart_draft bench_forward forward_cost. Default: all
# but bench_forward (atspeed's forward at the 7B/68M shapes, about 2 minutes: a call of its own).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$PWD"
kit="$root/.gpu"
dry=0
[ "${1:-}" = "--dry" ] && dry=1
: "${OUT:=$root/runs/gpu-out}"
mkdir -p "$OUT"
work="$(mktemp -d /tmp/atspeed-gpu.XXXXXX)"
start=$(date +%s)
log="$work/run.log"
exec > >(tee -a "$log") 2>&1
say() { echo "[gpu-run $(( $(date +%s) - start ))s] $*"; }
declare -A status
# Checkpoints stay behind (the way back takes 16 MiB a file); the test log comes back on its own.
save() {
  tar czf "$OUT/results.tgz" --exclude='*.h5' -C "$work" . 2>/dev/null
  cp "$log" "$OUT/run.log" 2>/dev/null
  [ -f "$work/tests.log" ] && cp "$work/tests.log" "$OUT/tests.log"
}
# stage NAME SECONDS CMD...: runs CMD with a timeout, records ok/fail/timeout, saves results.
stage() {
  local name=$1 limit=$2
  shift 2
  # bench_forward (the 7B build alone takes a minute) runs only when asked for by name.
  if { [ -n "${ATSPEED_GPU_STAGES:-}" ] && [[ " $ATSPEED_GPU_STAGES " != *" $name "* ]]; } ||
     { [ -z "${ATSPEED_GPU_STAGES:-}" ] && [ "$name" = bench_forward ]; }; then
    status[$name]="skipped"
    return 0
  fi
  say "stage $name (limit ${limit}s): $*"
  local t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >"$work/$name.log" 2>&1
  local rc=$?
  local took=$(( $(date +%s) - t0 ))
  case $rc in
    0) status[$name]="ok ${took}s" ;;
    124|137) status[$name]="TIMEOUT after ${limit}s" ;;
    *) status[$name]="FAILED rc=$rc ${took}s" ;;
  esac
  say "stage $name: ${status[$name]}"
  tail -n 15 "$work/$name.log" | sed 's/^/    /'
  save
  return 0
}

[ -f "$kit/manifest.env" ] || { echo "no $kit/manifest.env: run tools/gpu/prepare.sh first and carry .gpu" >&2; exit 2; }
# shellcheck source=/dev/null
. "$kit/manifest.env"

# --- environment ---------------------------------------------------------------------------------
# The paths compiled into the binaries (configs, fixtures, the atspeed binary the tests start, the
# test data) are the prepare machine's: make them resolve here.
src="$ATSPEED_KIT_SOURCE_DIR"
if [ "$(cd "$src" 2>/dev/null && pwd -P)" != "$(pwd -P)" ]; then
  [ -e "$src" ] && { echo "$src exists here and is not this tree; cannot place the binaries" >&2; exit 2; }
  mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"
fi
build="$ATSPEED_KIT_BUILD_DIR"
mkdir -p "$build/bin" "$build/tests"
cp -f "$kit/bin/atspeed" "$build/bin/"
cp -f "$kit/bin/atspeed_tests" "$kit/bin/atspeed_mpi_tests" "$build/tests/"
export ATSPEED_SHARED_DATA_DIR="$kit/shared/data/amazon"

# Debian packages into a prefix (never into /). LD_LIBRARY_PATH below puts Debian's libssl and
# libcurl before the image's: Python (torch's own RPATH finds its libraries) runs without it.
prefix=/tmp/atspeed-prefix
if [ ! -d "$prefix/usr" ]; then
  for d in "$kit"/debs/*.deb; do dpkg -x "$d" "$prefix"; done
fi
lib="$prefix/usr/lib/x86_64-linux-gnu"
# The prefix's libz.so points at Debian's /lib path: the image's libz.so.1 serves (fallback build).
[ -e "$lib/libz.so" ] || ln -sf "$(ldconfig -p | awk '/libz\.so\.1 /{print $NF; exit}')" "$lib/libz.so"
if [ $dry = 1 ] && [ -n "${ATSPEED_PYTHON:-}" ]; then py="$ATSPEED_PYTHON"; else py="$(command -v python3)"; fi
torch_dir="${ATSPEED_TORCH_DIR:-$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))')}"
export LD_LIBRARY_PATH="$torch_dir/lib:$torch_dir/../nvidia/nccl/lib:$torch_dir/../nvidia/cu13/lib:$lib:$lib/openmpi/lib:$prefix/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$prefix/usr/bin:$PATH"
# OpenMPI from the prefix (GPU.md): its install prefix, PMIx's, no ssh, root, more ranks than cores.
export OPAL_PREFIX="$prefix/usr" PMIX_INSTALL_PREFIX="$lib/pmix2" OMPI_MCA_plm_rsh_agent=false
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export ATSPEED_MPIEXEC="$prefix/usr/bin/mpirun.openmpi"
# Plugins whose transports this machine has no libraries for (fabric, UCX, verbs, PSM) would make
# every MPI start print load errors: drop them.
for f in "$lib"/openmpi/lib/openmpi3/*.so "$lib"/pmix2/lib/pmix/*.so; do
  ldd "$f" 2>/dev/null | grep -q "not found" && rm -f "$f"
done
export ATSPEED_CONFIG_DIR="$root/configs"
bin="$build/bin/atspeed"
threads=$(nproc)
device=cuda
[ $dry = 1 ] && device=cpu

# --- smoke ---------------------------------------------------------------------------------------
smoke() {
  set -x
  uname -a
  nvidia-smi || true
  env -u LD_LIBRARY_PATH "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
  missing=0
  for b in "$bin" "$build/tests/atspeed_tests" "$build/tests/atspeed_mpi_tests" "$ATSPEED_MPIEXEC"; do
    if ldd "$b" | grep "not found"; then echo "ldd: $b has unresolved libraries"; missing=1; fi
  done
  if [ $missing = 1 ]; then
    [ $dry = 1 ] && return 1  # the dry run's job is to catch exactly this
    touch "$work/needs-rebuild"
    return 1
  fi
  "$bin" --version
  "$ATSPEED_MPIEXEC" -np 2 true
  local sizes=(4096 8192) dt=bfloat16
  [ $dry = 1 ] && sizes=(256 512) && dt=float32
  "$bin" bench matmul --device $device --dtype $dt --sizes "${sizes[@]}" --repeats 10 \
    --json "$work/bench_matmul.json" run.out_dir="$work/matmul"
}

# The fallback: configure and build here against the image's torch and the unpacked prefix.
rebuild() {
  ( cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DATSPEED_TORCH_DIR="$torch_dir" \
      -DCMAKE_PREFIX_PATH="$prefix/usr" -DMPI_C_COMPILER="$prefix/usr/bin/mpicc.openmpi" \
      -DMPIEXEC_EXECUTABLE="$ATSPEED_MPIEXEC" -DPKG_CONFIG_EXECUTABLE="$prefix/usr/bin/pkgconf" &&
    PKG_CONFIG_LIBDIR="$lib/pkgconfig:$prefix/usr/share/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$prefix" \
    CPLUS_INCLUDE_PATH="$prefix/usr/include/x86_64-linux-gnu" cmake --build "$build" -j"$threads" ) >"$work/rebuild.log" 2>&1
}

export root kit work bin build py dry device prefix lib torch_dir threads
# timeout runs programs, not shell functions: hand the functions to a child bash.
stage smoke 60 bash -c "$(declare -f smoke); smoke"
if [ -f "$work/needs-rebuild" ]; then
  # The carried binaries miss a library here: build on this machine (2-3 minutes on 16 cores), then smoke again.
  stage rebuild 240 bash -c "$(declare -f rebuild); rebuild"
  stage smoke 60 bash -c "$(declare -f smoke); smoke"
fi
# JSON first: what the machine is and whether the kit's binaries run, whatever happens next.
env -u LD_LIBRARY_PATH "$py" - "$work" "$OUT/smoke.json" <<'EOF'
import json, os, subprocess, sys
work, out = sys.argv[1], sys.argv[2]
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e: return str(e)
j = {"gpu": sh("nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader"),
     "cpus": os.cpu_count(), "kernel": sh("uname -r"),
     "torch": sh(f"{sys.executable} -c 'import torch; print(torch.__version__)'"),
     "smoke_log_tail": open(os.path.join(work, "smoke.log")).read()[-3000:]}
p = os.path.join(work, "bench_matmul.json")
if os.path.exists(p): j["matmul"] = json.load(open(p))
json.dump(j, open(out, "w"), indent=2)
EOF

# --- tests ---------------------------------------------------------------------------------------
stage tests 90 "$build/tests/atspeed_tests" --gtest_filter='*_CUDA*' --gtest_output="xml:$work/cuda_tests.xml"

# --- benchmarks ----------------------------------------------------------------------------------
# atspeed's own forward at the paper's shapes (7B target, 68M draft, the LLaMA + LC-Rec vocabulary)
# and at ours, bf16 on the GPU (the 7B is built on the host first: about 27 GB of RAM).
forward_models=(target_llama7b draft_llama68m target_deep draft_shallow target_small quickstart_draft)
forward_args=(--device cuda --dtype bfloat16 --vocab 33024 --context 160)
project=(--project-target target_llama7b --project-draft draft_llama68m)
[ $dry = 1 ] && forward_models=(target_deep draft_shallow) && forward_args=(--device cpu --context 40) &&
  project=(--project-target target_deep --project-draft draft_shallow)
stage bench_forward 120 "$bin" bench forward --models "${forward_models[@]}" "${forward_args[@]}" --reps 10 \
  --json "$work/bench_forward.json" run.threads=$threads run.out_dir="$work/forward"

# When it ran, bench decode prices its forward traces with these curves: the projected speedup of
# the same decodes at the 7B/68M shapes (a projection, labelled so in the table).
[ -f "$work/bench_forward.json" ] && project+=(--project "$work/bench_forward.json") || project=()

data=(data="$ATSPEED_KIT_DATA" data.dir="$kit/shared/data/amazon/$ATSPEED_KIT_DATA")
users=200
[ $dry = 1 ] && users=20
for dt in float32 bfloat16; do
  # auto plans on 16 validation users (its plan and predictions land in the JSON's "auto").
  methods=(target sampling strict relaxed)
  [ $dt = float32 ] && methods+=(auto)
  stage "decode_$dt" 60 "$bin" bench decode --target "$kit/models/quickstart_target.h5" \
    --draft "$kit/models/quickstart_draft.h5" --users $users --ks 1 5 20 --batch-sizes 1 8 \
    --methods "${methods[@]}" --calib-users 16 --json "$work/bench_decode_$dt.json" --plot none "${project[@]}" -- "${data[@]}" \
    decode.device=$device decode.dtype=$dt run.threads=$threads run.out_dir="$work/decode_$dt" \
    decode.auto.cache_dir="$work/plans"
done
shrink=()
steps=60
[ $dry = 1 ] && shrink=(model.num_hidden_layers=2) && steps=4
for m in target_small quickstart_draft; do
  stage "train_$m" 25 "$bin" train-target "${data[@]}" model=$m "${shrink[@]}" train=quickstart \
    train.device=$device train.max_steps=$steps train.eval_every=0 train.checkpoint_every=0 train.log_every=10 \
    run.threads=$threads run.out_dir="$work/train_$m"
done

# The paper's shapes (LLaMA-7B target, LLaMA-68M draft) through HF transformers, bf16.
[ $dry = 0 ] && stage forward_cost 35 env -u LD_LIBRARY_PATH "$py" tools/gpu/forward_cost.py --json "$work/forward_cost.json"

# --- table ---------------------------------------------------------------------------------------
{
  echo "# atspeed GPU kit: ${ATSPEED_KIT_COMMIT} on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo 'no GPU (dry run)'), $(date -u +%Y-%m-%d)"
  echo
  echo "| stage | result |"
  echo "|---|---|"
  for s in smoke tests decode_float32 decode_bfloat16 train_target_small train_quickstart_draft bench_forward forward_cost; do
    [ $dry = 1 ] && [ $s = forward_cost ] && continue
    echo "| $s | ${status[$s]:-not run} |"
  done
  echo
  env -u LD_LIBRARY_PATH "$py" - "$work" <<'EOF'
import json, os, subprocess, sys, xml.etree.ElementTree as ET
w = sys.argv[1]
p = os.path.join(w, "bench_matmul.json")
if os.path.exists(p):
    j = json.load(open(p))
    print(f"matmul {j['dtype']} on {j['device']}: " + ", ".join(f"n={r['n']} {r['gflops']/1000:.1f} TFLOP/s" for r in j["results"]))
p = os.path.join(w, "cuda_tests.xml")
if os.path.exists(p):
    r = ET.parse(p).getroot()
    print(f"\n*_CUDA tests: {r.get('tests')} run, {r.get('failures')} failed, {r.get('disabled')} disabled, skipped "
          f"{sum(1 for t in r.iter('testcase') if t.find('skipped') is not None)}")
    for t in r.iter("testcase"):
        f = t.find("failure")
        if f is not None:
            print(f"  FAILED {t.get('classname')}.{t.get('name')}: {f.get('message', '')[:300]}")
for dt in ("float32", "bfloat16"):
    p = os.path.join(w, f"bench_decode_{dt}.json")
    if os.path.exists(p):
        print(f"\n## bench decode, {dt}\n", flush=True)
        subprocess.run([sys.executable, "tools/bench_table.py", p])
p = os.path.join(w, "bench_forward.json")
if os.path.exists(p):
    j = json.load(open(p))
    ms = j["models"]
    ns = [pt["n"] for pt in ms[0]["cost"]["points"]]
    print(f"\natspeed bench forward on {j['device']}, context {j['context']}, vocabulary {j['vocab']} (median ms):")
    print("| model | params (M) | " + " | ".join(f"n={n}" for n in ns) + " |")
    print("|---|---|" + "---|" * len(ns))
    for m in ms:
        print(f"| {m['model']} ({m['dtype']}) | {m['parameters'] / 1e6:.1f} | " + " | ".join(f"{pt['median_s'] * 1e3:.2f}" for pt in m["cost"]["points"]) + " |")
p = os.path.join(w, "forward_cost.json")
if os.path.exists(p):
    j = json.load(open(p))
    print(f"\nforward time (ms, bf16, context {j['results'][0]['context']}) against new tokens n, HF transformers on {j['device']}:")
    ns = [pt["n"] for pt in j["results"][0]["points"]]
    print("| model | " + " | ".join(f"n={n}" for n in ns) + " |")
    print("|---|" + "---|" * len(ns))
    for r in j["results"]:
        print(f"| {r['model']} ({r['parameters'] / 1e6:.0f} M) | " + " | ".join(f"{pt['median_ms']:.2f}" for pt in r["points"]) + " |")
for m in ("target_small", "quickstart_draft"):
    p = os.path.join(w, f"train_{m}", "metrics.jsonl")
    if not os.path.exists(p):
        continue
    rows = [json.loads(l) for l in open(p) if '"tokens_per_s"' in l]
    tail = [r["tokens_per_s"] for r in rows[len(rows) // 3:]]
    if tail:
        print(f"\ntrain {m}: {len(rows)} steps, median tokens/s after warm-up {sorted(tail)[len(tail) // 2]:.0f}, last loss {rows[-1]['loss']:.3f}")
EOF
} >"$work/summary.md" 2>&1
cp "$work/summary.md" "$OUT/summary.md"
save
say "done in $(( $(date +%s) - start )) s"
cat "$work/summary.md"
