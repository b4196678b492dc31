// Paths to ../shared (read-only fixtures). Tests that need it skip with a clear message when it is absent.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const sharedDir = process.env.QSAE_SHARED ?? resolve(repoRoot, "../shared");
export const haveShared = existsSync(join(sharedDir, "models"));
export const sharedSkipReason = `../shared not found at ${sharedDir} (set QSAE_SHARED): fixture tests skipped`;
if (!haveShared) console.warn(`qsae tests: ${sharedSkipReason}`);

export function sharedPath(...parts: string[]): string {
  return join(sharedDir, ...parts);
}
