#!/usr/bin/env node
// Builds the native addon (and, in a git checkout, the C++ tests) through cmake-js into build/.
// Incremental: a second run only rebuilds what changed. Env: QSAE_BUILD_DIR (default build),
// QSAE_SKIP_NATIVE_BUILD=1 skips, QSAE_CMAKE_ARGS adds -D options ("A=1 B=2"), QSAE_BUILD_TARGET builds one target.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
if (process.env.QSAE_SKIP_NATIVE_BUILD === "1") {
  console.log("qsae: skipping the native build (QSAE_SKIP_NATIVE_BUILD=1)");
  process.exit(0);
}
const out = process.env.QSAE_BUILD_DIR || "build";
const args = ["build", "-O", out, "-p", String(availableParallelism())];
if (existsSync("/usr/bin/ninja") || existsSync("/usr/local/bin/ninja")) args.push("-G", "Ninja");
for (const kv of (process.env.QSAE_CMAKE_ARGS || "").split(/\s+/).filter(Boolean)) args.push(`--CD${kv}`);
if (process.env.QSAE_BUILD_TARGET) args.push("-T", process.env.QSAE_BUILD_TARGET);
const cmakeJs = join(root, "node_modules", "cmake-js", "bin", "cmake-js");
const r = spawnSync(process.execPath, [cmakeJs, ...args], { cwd: root, stdio: "inherit" });
if (r.status !== 0) {
  console.error("qsae: native build failed. Run scripts/setup-system.sh first (libtorch, OpenBLAS, cmake, g++).");
  process.exit(r.status ?? 1);
}
