#!/usr/bin/env bash
# Compiles every .cu file for sm_80 and sm_90 with nvcc, without torch or a GPU (CI's check that the
# CUDA kernels build). Uses CMake's QSAE_CUDA_CHECK_ONLY mode of the one CMakeLists.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null 2>&1; then
  for d in /usr/local/cuda/bin /usr/local/bin; do [ -x "$d/nvcc" ] && export PATH="$d:$PATH"; done
fi
command -v nvcc >/dev/null 2>&1 || { echo "qsae: nvcc not found: the CUDA compile check needs the CUDA toolkit" >&2; exit 1; }
n=$(find native -name '*.cu' | wc -l)
echo "qsae: compiling $n .cu file(s) with $(nvcc --version | tail -1)"
cmake -S . -B build-cuda-check -G Ninja -DQSAE_CUDA_CHECK_ONLY=ON -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" >/dev/null
cmake --build build-cuda-check --parallel "$(nproc)"
echo "qsae: CUDA compile check passed ($n .cu file(s), and the CUDA glue where the system torch has headers)"
