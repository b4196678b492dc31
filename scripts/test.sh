#!/usr/bin/env bash
# The test suite: builds what changed (addon, C++ tests, TypeScript), runs the C++ tests (ctest) and the
# TypeScript tests (vitest), then prints one closing line with the totals.
set -uo pipefail
cd "$(dirname "$0")/.."
export QSAE_CMAKE_ARGS="${QSAE_CMAKE_ARGS:-} QSAE_BUILD_TESTS=ON"
node scripts/build-native.mjs || exit 1
npx tsc -p tsconfig.json || exit 1

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
ctest --test-dir "${QSAE_BUILD_DIR:-build}" --output-on-failure --output-junit "$results/ctest.xml"
ctest_rc=$?
npx vitest run --reporter=default --reporter=json --outputFile.json="$results/vitest.json" "$@"
vitest_rc=$?

node -e '
const fs = require("fs");
const [dir] = process.argv.slice(1);
let passed = 0, failed = 0, skipped = 0;
try {
  const x = fs.readFileSync(dir + "/ctest.xml", "utf8");
  const m = x.match(/<testsuite[^>]*>/);
  const num = (k) => Number((m && m[0].match(new RegExp(k + "=\"(\\d+)\"")) || [0, 0])[1]);
  failed += num("failures") + num("errors"); skipped += num("skipped"); passed += num("tests") - num("failures") - num("errors") - num("skipped");
} catch { failed += 1; }
try {
  const j = JSON.parse(fs.readFileSync(dir + "/vitest.json", "utf8"));
  passed += j.numPassedTests; failed += j.numFailedTests; skipped += j.numPendingTests + j.numTodoTests;
} catch { failed += 1; }
console.log(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
' "$results"
[ $ctest_rc -eq 0 ] && [ $vitest_rc -eq 0 ]
