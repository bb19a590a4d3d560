#!/usr/bin/env python3
"""The Debian packages the GPU kit carries to the device machine, derived, not listed by hand.

Two sets, both resolved with this machine's apt (Debian 12):
  runtime  every package that owns a shared library the carried binaries load (`ldd` of atspeed and
           the test binaries, and of OpenMPI's launcher, daemon and plugins), minus glibc, the GCC
           runtime and zlib (the image's own) and what the torch wheel provides;
  build    the -dev packages named in launch/deps.env and, following the first alternative of each
           Depends, the -dev packages and libraries they need to configure and link (the fallback
           build on the device), minus the toolchain, Fortran, InfiniBand/UCX and base packages.
So a dependency added to deps.env later travels too. Prints one package per line (sorted) or, with
--download DIR, fetches them there with `apt-get download` (already present files are kept).
"""
import argparse
import os
import re
import shlex
import subprocess
import sys

# Named in deps.env but tools the device image has its own of (cmake, ninja, gcc, python); pkg-config
# travels (the fallback build's pkg_check_modules needs it).
TOOLCHAIN = {"build-essential", "cmake", "ninja-build", "ccache", "python3", "python3-venv", "python3-pip"}
# Never carried: the image has them (and a Debian copy on LD_LIBRARY_PATH would shadow newer ones),
# or nothing atspeed runs needs them (Fortran bindings, InfiniBand/UCX transports that a one-GPU
# machine has no hardware for, documentation JavaScript, test frameworks' sources).
EXCLUDE = re.compile(
    r"^(libc6(-dev)?|libc-dev-bin|libc-bin|libgcc.*|libstdc\+\+.*|gcc.*|g\+\+.*|cpp.*|binutils.*|libbinutils|"
    r"perl.*|libperl.*|dpkg|debconf|tar|coreutils|base-files|zlib1g|libgomp1|libquadmath0|"
    r"gfortran.*|libgfortran.*|flang.*|libflang.*|libjs-.*|catch2|googletest|"
    r"libibverbs.*|ibverbs-providers|librdmacm.*|libfabric.*|libucx.*|libpsm.*|libnl-.*|libnuma.*|"
    r"libhwloc-dev|libhwloc-plugins|libevent-dev|libpmix-dev|libltdl.*|libjpeg.*|hdf5-helpers|"
    r"libhdf5-(fortran|hl-fortran|cpp|hl-cpp|hl).*|linux-libc-dev|libcrypt.*|libnsl.*|libtirpc.*|"
    r"libopenblas.*|libxnvctrl0|ocl-icd.*|libx11.*|libxcb.*|libxau.*|libxdmcp.*|libxext.*|libpciaccess.*|"
    r"libudev1|libselinux1|libpcre2.*|libzstd1|liblzma5|libbz2.*|libcap.*|libaudit.*|libmd0|libbsd0|"
    r"libidn2.*|libunistring.*|libtasn1.*|libgmp.*|libnettle.*|libhogweed.*|libp11-kit.*|libgnutls.*|libffi.*|"
    r"openssh-client|adduser|passwd|libpam.*|libsemanage.*|libsepol.*|libdb5.*|libsqlite3.*)$")


def deps_env_packages(path):
    text = open(path).read()
    m = re.search(r'ATSPEED_APT_PACKAGES="([^"]*)"', text)
    if not m:
        sys.exit(f"{path}: no ATSPEED_APT_PACKAGES=\"...\" line")
    return [p for p in m.group(1).split() if p not in TOOLCHAIN]


def first_alternative_depends(package):
    out = subprocess.run(["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True).stdout
    deps = []
    for line in out.splitlines():
        if line.startswith(("Depends:", "Pre-Depends:")):
            for group in line.split(":", 1)[1].split(","):
                name = group.split("|")[0].strip().split(" ")[0].split(":")[0]
                if name:
                    deps.append(name)
    return deps


def build_set(roots):
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in seen or EXCLUDE.match(p):
            continue
        seen.add(p)
        for d in first_alternative_depends(p):
            if d.endswith("-dev") or d.startswith("lib") or d in ("civetweb", "openmpi-bin", "openmpi-common", "pkgconf", "pkgconf-bin"):
                todo.append(d)
    return seen


_owners = {}


def owner_of(path):
    """The package owning a file (None when none does), memoised: dpkg -S takes ~0.3 s a call."""
    key = os.path.realpath(path)
    if key not in _owners:
        _owners[key] = _dpkg_owner(path)
    return _owners[key]


def _dpkg_owner(path):
    r = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True)
    if r.returncode != 0:
        r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return r.stdout.split(":")[0].strip()


# The runtime closure is carried whole but for these: the C and C++ runtimes (the image's are newer,
# and a Debian copy on LD_LIBRARY_PATH would break its own programs) and zlib (stable since 2005).
# Everything else travels even when the image may have it: a minimal image lacked libunistring.so.2
# (Ubuntu 24.04 ships .5), and Debian's copies are consistent with each other.
RUNTIME_EXCLUDE = re.compile(r"^(libc6|libstdc\+\+6|libgcc-s1|zlib1g)$")


def runtime_set(binaries, torch_lib):
    pkgs = set()
    for b in binaries:
        out = subprocess.run(["ldd", b], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.search(r"=>\s+(/\S+)", line)
            if not m or (torch_lib and m.group(1).startswith(torch_lib)):
                continue
            owner = owner_of(m.group(1))
            if owner and not RUNTIME_EXCLUDE.match(owner):
                pkgs.add(owner)
    return pkgs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deps", required=True, help="launch/deps.env")
    ap.add_argument("--binaries", nargs="*", default=[], help="ELF files whose libraries must travel")
    ap.add_argument("--torch-lib", default="", help="the torch wheel's lib/ prefix (its libraries stay behind)")
    ap.add_argument("--download", help="apt-get download the packages into this directory")
    a = ap.parse_args()
    for b in a.binaries:
        if not os.path.exists(b):
            sys.exit(f"debs.py: {b} does not exist")
    pkgs = sorted(build_set(deps_env_packages(a.deps)) | runtime_set(a.binaries, a.torch_lib))
    if not a.download:
        print("\n".join(pkgs))
        return
    os.makedirs(a.download, exist_ok=True)
    have = {f.split("_")[0] for f in os.listdir(a.download) if f.endswith(".deb")}
    missing = [p for p in pkgs if p not in have]
    if missing:
        r = subprocess.run(["apt-get", "download", *missing], cwd=a.download)
        if r.returncode != 0:
            sys.exit("apt-get download failed for: " + " ".join(shlex.quote(p) for p in missing))
    wanted = set(pkgs)
    for f in os.listdir(a.download):  # drop packages no longer derived (a removed dependency)
        if f.endswith(".deb") and f.split("_")[0] not in wanted:
            os.remove(os.path.join(a.download, f))
    print(f"debs.py: {len(pkgs)} packages in {a.download}")


if __name__ == "__main__":
    main()
