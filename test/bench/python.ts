// Resolves python3 once per test file and exports it as QSAE_PYTHON, so that the CLI runs of the tests
// skip the interpreter lookup (version-manager shims take seconds to start on a loaded machine).
import { execFileSync } from "node:child_process";

try {
  process.env.QSAE_PYTHON ??= execFileSync("python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).trim();
} catch {
  // no python3: the executor tests report it
}
