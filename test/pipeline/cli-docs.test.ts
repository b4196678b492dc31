// docs/cli.md is generated from the yargs definitions; this fails when a command changed without
// regenerating it (node scripts/gen-cli-docs.mjs).
import { spawnSync } from "node:child_process";
import { join } from "node:path";

import { describe, expect, it } from "vitest";

import { repoRoot } from "../helpers/shared.js";

describe("docs/cli.md", () => {
  it("matches the help of every registered command", () => {
    const r = spawnSync(process.execPath, [join(repoRoot, "scripts", "gen-cli-docs.mjs"), "--check"], { cwd: repoRoot, encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/up to date/);
    expect(r.status).toBe(0);
  });
});
