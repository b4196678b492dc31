#!/usr/bin/env bash
# Installs the system packages qsae builds and runs against. Idempotent: does nothing when they are present.
# On Debian/Ubuntu as root it installs them; elsewhere it prints what to install.
set -euo pipefail

# Build: libtorch (Debian 1.13, CPU), OpenBLAS (pthread variant: without it Debian's torch runs the
# reference BLAS, about 25x slower), a C++ toolchain, CMake + Ninja, ccache, nlohmann-json, doctest.
# Run time: python3 (executes HumanEval programs). Test tooling only: python3-torch/numpy/scipy, and
# chromium (the report's browser test, driven by playwright-core).
PACKAGES=(libtorch-dev libopenblas0-pthread cmake ninja-build g++ ccache nlohmann-json3-dev doctest-dev
          python3 python3-torch python3-numpy python3-scipy chromium)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
else
  echo "qsae setup: this is not a Debian/Ubuntu system. Install: libtorch (or PyTorch, found through python3), OpenBLAS, CMake >= 3.18, Ninja, a C++17 compiler, nlohmann-json, doctest, python3." >&2
  exit 0
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "qsae setup: system packages present."
else
  if [ "$(id -u)" -ne 0 ]; then
    echo "qsae setup: missing packages: ${missing[*]}" >&2
    echo "qsae setup: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "qsae setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's libblas.so.3 is an alternative; make sure the OpenBLAS pthread build provides it.
if command -v update-alternatives >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
  openblas=/usr/lib/$arch/openblas-pthread/libblas.so.3
  if [ -e "$openblas" ]; then
    update-alternatives --set "libblas.so.3-$arch" "$openblas" >/dev/null 2>&1 || true
    lapack=/usr/lib/$arch/openblas-pthread/liblapack.so.3
    [ -e "$lapack" ] && { update-alternatives --set "liblapack.so.3-$arch" "$lapack" >/dev/null 2>&1 || true; }
  fi
fi
