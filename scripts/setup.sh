#!/usr/bin/env bash
# Everything a fresh Debian machine needs for qsae: system packages, npm dependencies, the native addon
# (built by npm's install script) and the TypeScript build. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  node scripts/build-native.mjs
  npx tsc -p tsconfig.json
fi
