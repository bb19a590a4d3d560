#!/usr/bin/env bash
# GPU kit dry run (issue 14), here on the CPU: runs tools/gpu/run.sh --dry in a clean Debian 12
# minbase root that holds only what the device call would send (the git working tree plus .gpu/) and
# the torch venv that launch/setup.sh made, mounted where the device image keeps its torch
# (/opt/torch/.venv). It fails on any `ldd` "not found" of the carried binaries (run.sh --dry) and on
# more than 60 MiB carried. Not run by CI (it needs root, mounts and a Debian mirror).
#
#   bash tools/gpu/prepare.sh && bash tools/gpu/dryrun.sh
#
# The base root is made once with debootstrap (cached in $ATSPEED_DRYRUN_BASE, about 2 minutes);
# each dry run copies it, so nothing of one run leaks into the next.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$PWD"
: "${ATSPEED_DRYRUN_BASE:=/var/tmp/atspeed-chroot-base}"
: "${ATSPEED_GPU_MAX_MIB:=60}"
: "${ATSPEED_GPU_TORCH:=2.11.0}"
export ATSPEED_TORCH_VERSION="$ATSPEED_GPU_TORCH"
start=$(date +%s)
say() { echo "[gpu-dryrun $(( $(date +%s) - start ))s] $*"; }
[ "$(id -u)" = 0 ] || { echo "dryrun.sh needs root (chroot, mount)" >&2; exit 2; }
[ -f .gpu/manifest.env ] || { echo "no .gpu/manifest.env: run tools/gpu/prepare.sh first" >&2; exit 2; }
. launch/setup.sh   # the torch venv (ATSPEED_TORCH_VENV); installs nothing when present

if [ ! -x "$ATSPEED_DRYRUN_BASE/bin/bash" ]; then
  say "making the Debian 12 minbase root in $ATSPEED_DRYRUN_BASE"
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
  debootstrap --variant=minbase bookworm "$ATSPEED_DRYRUN_BASE.tmp" http://deb.debian.org/debian
  mv "$ATSPEED_DRYRUN_BASE.tmp" "$ATSPEED_DRYRUN_BASE"
fi

# What the device call sends: tracked and untracked-not-ignored files, plus the carried .gpu/.
files="$(mktemp)"
git ls-files -z --cached --others --exclude-standard >"$files"
tree_bytes=$(xargs -0 -a "$files" du -cb 2>/dev/null | tail -n 1 | cut -f1)
kit_bytes=$(du -sb .gpu | cut -f1)
total_mib=$(( (tree_bytes + kit_bytes + 1048575) / 1048576 ))
say "carried: working tree $(( tree_bytes / 1024 )) KiB + .gpu $(( kit_bytes / 1048576 )) MiB = $total_mib MiB"
if [ "$total_mib" -gt "$ATSPEED_GPU_MAX_MIB" ]; then
  echo "carried size $total_mib MiB is over $ATSPEED_GPU_MAX_MIB MiB" >&2
  exit 1
fi

chroot_dir="$(mktemp -d /var/tmp/atspeed-dryrun.XXXXXX)"
cleanup() {
  for m in opt/torch/.venv "${py_home#/}" dev/pts dev proc; do
    [ -n "$m" ] && mountpoint -q "$chroot_dir/$m" 2>/dev/null && umount -l "$chroot_dir/$m"
  done
  rm -rf --one-file-system "$chroot_dir"
}
trap cleanup EXIT
cp -a "$ATSPEED_DRYRUN_BASE/." "$chroot_dir/"
# The tree goes to another path than here, so run.sh's relocation of the compiled-in paths runs too.
mkdir -p "$chroot_dir/repo"
tar -C "$root" --null -T "$files" -cf - | tar -C "$chroot_dir/repo" -xf -
cp -a .gpu "$chroot_dir/repo/.gpu"
rm -f "$files"
mkdir -p "$chroot_dir/opt/torch/.venv" "$chroot_dir/proc" "$chroot_dir/dev"
mount --bind "$ATSPEED_TORCH_VENV" "$chroot_dir/opt/torch/.venv"
# A venv's interpreter is a link to its base install: mount that too, read-only, at its own path.
py_home="$(sed -n 's/^home = //p' "$ATSPEED_TORCH_VENV/pyvenv.cfg")"
py_home="$(dirname "$py_home")"
mkdir -p "$chroot_dir$py_home"
mount --bind -o ro "$py_home" "$chroot_dir$py_home"
mount -t proc proc "$chroot_dir/proc"
mount --bind /dev "$chroot_dir/dev"

say "running tools/gpu/run.sh --dry in the clean root"
set +e
chroot "$chroot_dir" /usr/bin/env -i HOME=/root PATH=/opt/torch/.venv/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  OUT=/out ATSPEED_GPU_STAGES="${ATSPEED_GPU_STAGES:-}" ATSPEED_PYTHON=/opt/torch/.venv/bin/python ATSPEED_TORCH_DIR="/opt/torch/.venv/${ATSPEED_TORCH_DIR#"$ATSPEED_TORCH_VENV"/}" /bin/bash -c 'cd /repo && bash tools/gpu/run.sh --dry'
rc=$?
set -e
mkdir -p runs/gpu-dryrun
cp -r "$chroot_dir/out/." runs/gpu-dryrun/ 2>/dev/null || true
# run.sh's stages record failures without stopping; the dry run fails if any stage did.
if [ $rc = 0 ] && grep -Eq '\| (FAILED|TIMEOUT)' runs/gpu-dryrun/summary.md; then rc=1; fi
if [ $rc = 0 ] && grep -q '| not run |' runs/gpu-dryrun/summary.md; then rc=1; fi
say "dry run $([ $rc = 0 ] && echo passed || echo FAILED) (rc $rc); outputs in runs/gpu-dryrun/"
exit $rc
