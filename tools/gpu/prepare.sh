#!/usr/bin/env bash
# GPU kit, step 1 of 2 (issue 14). Run here, on the Debian 12 build machine (no GPU needed):
#
#   bash tools/gpu/prepare.sh
#
# Fills .gpu/ (git-ignored; the device call carries it, at most 60 MiB) with what the lent GPU
# machine lacks (../shared/GPU.md: a bare, offline Ubuntu-like image with torch 2.11 and nvcc):
#   .gpu/bin/           atspeed, atspeed_tests, atspeed_mpi_tests built here against torch
#                       $ATSPEED_GPU_TORCH (default 2.11.0, the image's) in build-gpu/
#   .gpu/debs/          the Debian packages they load and the fallback build needs, derived from
#                       launch/deps.env and ldd by tools/gpu/debs.py
#   .gpu/shared/        the real Amazon data (../shared/data/amazon), or a synthetic set without it
#   .gpu/models/        the quickstart target and CE draft checkpoints (best.h5, trained here on the
#                       CPU when absent: about 2 minutes)
#   .gpu/manifest.env   the paths compiled into the binaries, the commit, the torch version
# Then, where a GPU is lent: the device tool runs `bash tools/gpu/run.sh` with carry [".gpu"]
# (README "GPU"); tools/gpu/dryrun.sh runs the same script here in a clean Debian root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$PWD"
kit="$root/.gpu"
: "${ATSPEED_GPU_TORCH:=2.11.0}"
: "${ATSPEED_GPU_MAX_MIB:=60}"
export ATSPEED_TORCH_VERSION="$ATSPEED_GPU_TORCH"
export ATSPEED_BUILD_DIR="${ATSPEED_GPU_BUILD_DIR:-build-gpu}"
start=$(date +%s)
say() { echo "[gpu-prepare] $* ($(( $(date +%s) - start )) s)"; }

say "1/5 build against torch $ATSPEED_GPU_TORCH in $ATSPEED_BUILD_DIR"
bash launch/build.sh
. launch/setup.sh
build="$root/$ATSPEED_BUILD_DIR"

say "2/5 binaries"
mkdir -p "$kit/bin"
for b in bin/atspeed tests/atspeed_tests tests/atspeed_mpi_tests; do
  # Symbols are not needed there (no debugger on the image); stripping halves the carried size.
  strip --strip-unneeded -o "$kit/bin/$(basename "$b")" "$build/$b"
done

say "3/5 Debian packages (tools/gpu/debs.py)"
mpi_plugins=(/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/*.so /usr/lib/x86_64-linux-gnu/pmix2/lib/pmix/*.so)
python3 tools/gpu/debs.py --deps launch/deps.env --torch-lib "$ATSPEED_TORCH_DIR" --download "$kit/debs" \
  --binaries "$kit"/bin/* /usr/bin/mpirun.openmpi /usr/bin/orted "${mpi_plugins[@]}"

say "4/5 data"
mkdir -p "$kit/shared/data/amazon"
if [ -d ../shared/data/amazon/beauty ]; then
  for ds in beauty games; do
    rm -rf "$kit/shared/data/amazon/$ds"
    cp -r "../shared/data/amazon/$ds" "$kit/shared/data/amazon/$ds"
  done
  data=(data=beauty data.dir="$kit/shared/data/amazon/beauty")
else
  "$build/bin/atspeed" data synth --out "$kit/shared/data/amazon/synthetic"
  data=(data=synthetic data.dir="$kit/shared/data/amazon/synthetic")
fi

say "5/5 models"
mkdir -p "$kit/models"
train_dir="${ATSPEED_GPU_TRAIN_DIR:-runs/gpu-kit}"
for role in target draft; do
  if [ ! -f "$kit/models/quickstart_$role.h5" ]; then
    say "training quickstart_$role on the CPU into $train_dir/$role"
    "$build/bin/atspeed" train-target "${data[@]}" model=quickstart_$role train=quickstart \
      run.out_dir="$train_dir/$role"
    cp "$train_dir/$role/best.h5" "$kit/models/quickstart_$role.h5"
  fi
done

# What run.sh needs to know about this build: the absolute paths compiled into the binaries (config
# and fixture lookup, the atspeed binary the tests start, the test data, the MPI launcher).
cat >"$kit/manifest.env" <<EOF
ATSPEED_KIT_SOURCE_DIR=$root
ATSPEED_KIT_BUILD_DIR=$build
ATSPEED_KIT_TORCH_VERSION=$ATSPEED_GPU_TORCH
ATSPEED_KIT_COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)
ATSPEED_KIT_DATA=${data[0]#data=}
ATSPEED_KIT_PREPARED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
EOF

size=$(du -sb "$kit" | cut -f1)
mib=$(( (size + 1048575) / 1048576 ))
du -sh "$kit"/* | sed 's/^/  /'
if [ "$mib" -gt "$ATSPEED_GPU_MAX_MIB" ]; then
  echo "[gpu-prepare] .gpu/ is $mib MiB, more than $ATSPEED_GPU_MAX_MIB MiB (the device call carries at most 64 MiB" \
       "with the working tree)" >&2
  exit 1
fi
say "done: .gpu/ is $mib MiB; run tools/gpu/dryrun.sh here, or the device call of README 'GPU'"
