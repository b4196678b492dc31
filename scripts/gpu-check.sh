#!/usr/bin/env bash
# One call on a lent GPU machine (PyTorch + CUDA + nvcc, no Node, no apt, no network): builds qsae's C++ core
# with its CUDA kernels against python3's torch, writes reference outputs with the transformers library,
# runs the C++ tests (the CUDA ones included, and the transformers comparison) and the native benchmarks.
# Budget: ~7 minutes on 16 cores. Results under $OUT (default ./gpu-results), at most 8 files:
#   summary.md, logs.tgz (every log), bench-{model,sae,quant}.json, transformers-fixtures.tgz.
#
# Header-only build dependencies and the test fixtures do not exist on that machine: prepare them here with
#   bash scripts/gpu-check.sh --prepare [shared] [node]
# and carry `.gpu-deps` with the call (it is listed in .git/info/exclude by --prepare). `shared` (the default)
# copies doctest, nlohmann/json and ../shared; `node` packs what an end-to-end run of the CLI needs there
# (this machine's node binary, N-API headers, the production node_modules, the compiled dist/ and the system
# python3's standard library as a training corpus), about 35 MB; the two together may exceed what a call carries.
#
# Knobs (environment): GPU_CHECK_BUDGET (seconds, default 480), GPU_CHECK_TARGETS (default "all qsae_benches"),
# GPU_CHECK_STEPS (default "tests transformers benches"; add "node" for GPU_CHECK_NODE), GPU_CHECK_BENCHES,
# GPU_CHECK_NODE (a bash command run with node on PATH, QSAE_ADDON set and $OUT exported; limit GPU_CHECK_NODE_LIMIT).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "${1:-}" = "--prepare" ]; then
  shift
  what="${*:-shared}"
  grep -qx '/.gpu-deps/' .git/info/exclude 2>/dev/null || echo '/.gpu-deps/' >> .git/info/exclude
  rm -rf .gpu-deps && mkdir -p .gpu-deps/include
  cp -r /usr/include/doctest /usr/include/nlohmann .gpu-deps/include/
  if [[ " $what " == *" shared "* ]] && [ -d ../shared/models ]; then
    mkdir -p .gpu-deps/shared && cp -r ../shared/models ../shared/reference .gpu-deps/shared/
  fi
  if [[ " $what " == *" node "* ]]; then
    set -e
    mkdir -p .gpu-deps/node/include
    node_inc=$(dirname "$(find /usr/include/node /usr/local/include/node -name node_api.h 2>/dev/null | head -1)")
    cp "$node_inc"/{node_api.h,node_api_types.h,js_native_api.h,js_native_api_types.h} .gpu-deps/node/include/
    xz -T2 -9 < "$(command -v node)" > .gpu-deps/node/node.xz
    npx tsc -p tsconfig.json
    npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2 | sed "s|^$ROOT/||" | sort -u > .gpu-deps/node/modules.txt
    tar cJf .gpu-deps/node/node_modules.tar.xz -T .gpu-deps/node/modules.txt
    tar cJf .gpu-deps/node/dist.tar.xz dist
    stdlib=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
    (cd / && find "${stdlib#/}" -name '*.py' -print0 | tar chJf "$ROOT/.gpu-deps/node/python3-stdlib.tar.xz" --null -T -)  # -h: symlinked files (Debian's sitecustomize.py) as files
    echo "${stdlib}" > .gpu-deps/node/python3-stdlib.path
    set +e
  fi
  du -sh .gpu-deps
  exit 0
fi

OUT="${OUT:-$ROOT/gpu-results}"
WORK=/tmp/qsae-gpu
rm -rf "$WORK" && mkdir -p "$OUT" "$WORK/logs"
summary="$OUT/summary.md"
start=$(date +%s)
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }

# The whole script keeps inside GPU_CHECK_BUDGET seconds (default 480): each step's limit is cut to what is
# left, and the logs are re-packed after every step, so a run stopped from outside still returns them.
deadline=$(( start + ${GPU_CHECK_BUDGET:-480} ))
export GPU_CHECK_DEADLINE=$deadline  # for GPU_CHECK_NODE jobs that fit their work to the time left
step() {  # step NAME TIMEOUT_S CMD...: one step with a time limit, logged to $WORK/logs/NAME.log
  local name=$1 limit=$2
  shift 2
  local left=$(( deadline - $(date +%s) - 5 ))
  if [ "$left" -lt 10 ]; then note "| $name | skipped: out of time | |"; return 124; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$WORK/logs/$name.log" 2>&1
  local rc=$?
  note "| $name | rc=$rc | $(( $(date +%s) - t0 )) s |"
  tar czf "$OUT/logs.tgz" -C "$WORK" logs machine.txt 2>/dev/null
  return $rc
}

export PATH="/usr/local/cuda/bin:$PATH"
extra_flags=""
[ -d .gpu-deps/include ] && extra_flags="-isystem $ROOT/.gpu-deps/include"
if [ -z "${QSAE_SHARED:-}" ]; then
  if [ -d .gpu-deps/shared/models ]; then export QSAE_SHARED=$ROOT/.gpu-deps/shared
  elif [ -d ../shared/models ]; then export QSAE_SHARED=$(cd ../shared && pwd); fi
fi

note "# qsae gpu-check $(date -u +%Y-%m-%dT%H:%MZ)"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), '| transformers', transformers.__version__)" 2>&1
  nvcc --version | tail -1; cmake --version | head -1; c++ --version | head -1
  which node || echo "node: not installed"; echo "cores: $(nproc)"; echo "QSAE_SHARED=${QSAE_SHARED:-unset}"; } > "$WORK/machine.txt"
note '```'; cat "$WORK/machine.txt" >> "$summary"; note '```'
note "| step | status | time |"
note "|---|---|---|"

STEPS=" ${GPU_CHECK_STEPS:-tests transformers benches} "
has() { [[ "$STEPS" == *" $1 "* ]]; }

# transformers reference outputs run beside the build (they need one core and the GPU briefly).
TREF="$WORK/transformers-reference"
tref_pid=""
if has transformers; then
  ( step transformers-reference 300 env PYTHONUNBUFFERED=1 python3 scripts/transformers-reference.py --out "$TREF" ) &
  tref_pid=$!
fi

# Node for the end-to-end CLI (packed by --prepare node): the binary, the production packages, the compiled
# TypeScript, and the training corpus at the same absolute path it has on the machine that packed it.
addon_flags=()
if has node && [ -f .gpu-deps/node/node.xz ]; then
  mkdir -p /tmp/qsae-node/bin && xz -dc .gpu-deps/node/node.xz > /tmp/qsae-node/bin/node && chmod +x /tmp/qsae-node/bin/node
  export PATH="/tmp/qsae-node/bin:$PATH"
  tar xJf .gpu-deps/node/node_modules.tar.xz && tar xJf .gpu-deps/node/dist.tar.xz
  stdlib=$(cat .gpu-deps/node/python3-stdlib.path)
  [ -e "$stdlib" ] || tar xJf .gpu-deps/node/python3-stdlib.tar.xz -C /
  note "node $(node --version 2>&1); corpus $stdlib: $(find "$stdlib" -name '*.py' | wc -l) files"
  addon_flags=("-DCMAKE_JS_INC=$ROOT/.gpu-deps/node/include")
fi

BUILD=build-gpu
step configure 150 cmake -S . -B "$BUILD" -G Ninja -DQSAE_BUILD_TESTS=ON -DQSAE_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
  -DQSAE_CUDA_ARCHS=90 "-DCMAKE_CXX_FLAGS=$extra_flags" "${addon_flags[@]}" || { note "configure failed:"; tail -30 "$WORK/logs/configure.log"; }
# shellcheck disable=SC2086
step build 300 cmake --build "$BUILD" --parallel "$(nproc)" --target ${GPU_CHECK_TARGETS:-all qsae_benches} -- -k 0 \
  || { note "build failed: see logs/build.log"; grep -E "error" "$WORK/logs/build.log" | sort -u | head -40; }
grep -q "QSAE_HAVE_CUDA" "$BUILD/compile_commands.json" 2>/dev/null || note "WARNING: built without CUDA (torch_cuda not found)"

# ---- the end-to-end job (GPU_CHECK_NODE), e.g. training the default model on the GPU ----
if has node && [ -n "${GPU_CHECK_NODE:-}" ]; then
  export QSAE_ADDON="$ROOT/$BUILD/qsae.node" OUT
  [ -f "$QSAE_ADDON" ] || QSAE_ADDON=$(find "$ROOT/$BUILD" -name qsae.node | head -1)
  step node-job "${GPU_CHECK_NODE_LIMIT:-300}" bash -c "$GPU_CHECK_NODE" || true
fi

# ---- tests (CPU and CUDA) ----
if has tests; then
  step ctest 150 ctest --test-dir "$BUILD" --output-on-failure --timeout 140 -j 4 || true
  grep -hE "^\[doctest\] (test cases|assertions)|MESSAGE|worst|skipped" "$WORK/logs/ctest.log" | head -60 > "$WORK/ctest-messages.txt" || true
  # A test binary that crashed: a backtrace of the crashing case, then the binary's other cases.
  for t in $(grep -oE "[0-9]+ - [a-z_]+ \((SEGFAULT|Child aborted|Subprocess aborted|Exception)" "$WORK/logs/ctest.log" | awk '{print $3}'); do
    exe="$ROOT/$BUILD/qsae_test_$t"
    case_name=$(grep -B3 "CRASHED" "$WORK/logs/ctest.log" | grep -m1 "TEST CASE:" | sed 's/^TEST CASE: *//')
    note "crashed: $t / $case_name"
    [ -n "$case_name" ] || continue
    step "gdb-$t" 90 cuda-gdb -batch -ex run -ex bt -ex "info registers rip" --args "$exe" -tc="$case_name" || true
    step "rest-$t" 120 "$exe" -tce="$case_name" || true
  done
fi
[ -n "$tref_pid" ] && wait "$tref_pid"
if has transformers && [ -d "$TREF/reference" ]; then
  # Our fp32 forward against what transformers computed on this machine, for every architecture.
  step transformers-compare 120 env QSAE_TRANSFORMERS_REF="$TREF" "$BUILD/qsae_test_model" -tc='*transformers*' -s || true
  tar czf "$OUT/transformers-fixtures.tgz" -C "$TREF" .
fi

# ---- benchmarks (CUDA) ----
has benches || GPU_CHECK_BENCHES=" "
for b in ${GPU_CHECK_BENCHES:-sae:90 quant:60 model:150}; do
  exe="$BUILD/qsae_bench_${b%%:*}"
  [ -x "$exe" ] || { note "| bench_${b%%:*} | missing | |"; continue; }
  step "bench_${b%%:*}" "${b##*:}" "$exe" --device cuda --out "$OUT/bench-${b%%:*}.json" || true
done

note ""
note "total $(( $(date +%s) - start )) s"
for f in node-job ctest gdb-sae rest-sae transformers-compare bench_model bench_sae bench_quant; do
  [ -f "$WORK/logs/$f.log" ] && { echo "--- $f (tail)"; tail -n 12 "$WORK/logs/$f.log"; }
done
tar czf "$OUT/logs.tgz" -C "$WORK" logs machine.txt ctest-messages.txt 2>/dev/null
tail -n 20 "$summary"
