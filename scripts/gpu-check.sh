#!/usr/bin/env bash
# One call on a lent GPU machine (PyTorch + CUDA + nvcc, probably no Node): builds qsae's C++ core with
# its CUDA kernels against python3's torch, runs the C++ tests (CUDA ones included) and the native
# benchmarks, and writes logs plus a summary table under $OUT (default ./gpu-results). Budget: ~8 minutes.
# Modules add their steps to the STEPS section below.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-results}"
mkdir -p "$OUT"
summary="$OUT/summary.md"
start=$(date +%s)
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }

step() {  # step NAME TIMEOUT_S CMD...: runs one step with a time limit, logs to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  note "| $name | rc=$rc | $(( $(date +%s) - t0 )) s |"
  return $rc
}

note "# qsae gpu-check $(date -u +%Y-%m-%dT%H:%MZ)"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" 2>&1
  nvcc --version | tail -1; which node || echo "node: not installed"; nproc; } > "$OUT/machine.txt"
note '```'; cat "$OUT/machine.txt" >> "$summary"; note '```'
note "| step | status | time |"
note "|---|---|---|"

BUILD=build-gpu
step configure 300 cmake -S . -B "$BUILD" -G Ninja -DQSAE_BUILD_TESTS=ON -DQSAE_CUDA=ON -DCMAKE_BUILD_TYPE=Release || true
step build 420 cmake --build "$BUILD" --parallel "$(nproc)" --target all qsae_benches || { note "build failed: see build.log"; tail -40 "$OUT/build.log"; }
grep -q "QSAE_HAVE_CUDA" "$BUILD/compile_commands.json" 2>/dev/null || note "WARNING: built without CUDA (torch_cuda not found)"

# ---- STEPS: tests, then benchmarks (each bench writes JSON under $OUT) ----
step ctest 240 ctest --test-dir "$BUILD" --output-on-failure || true
for b in "$BUILD"/qsae_bench_*; do
  [ -x "$b" ] || continue
  n=$(basename "$b")
  step "$n" 180 "$b" --device cuda --out "$OUT/$n.json" || true
done
# Reference outputs from the transformers library for tiny random configs (model module).
if [ -f scripts/transformers-reference.py ]; then
  step transformers-reference 240 python3 scripts/transformers-reference.py --out "$OUT/transformers-reference" || true
fi

note ""
note "total $(( $(date +%s) - start )) s"
tail -n 30 "$summary"
