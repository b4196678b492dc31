// examples/embed.ts runs on the bundled default model: NF4 load, capture, SAE encode, top features per token.
import { existsSync } from "node:fs";
import { join } from "node:path";

import { describe, expect, it } from "vitest";

import { defaultModelDir } from "../../src/pipeline/demo.js";
import { repoRoot } from "../helpers/shared.js";
import { spawnSync } from "node:child_process";

const model = defaultModelDir();
const have = existsSync(join(model, "config.json"));

describe.skipIf(!have)(`examples/embed.ts (${have ? model : "the bundled default model is not there yet"})`, () => {
  it("prints the top SAE features of every token of its prompts", () => {
    const r = spawnSync(process.execPath, [join(repoRoot, "dist", "examples", "embed.js"), model], { cwd: repoRoot, encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("prompt 0");
    expect(lines).toContain("prompt 1");
    const tokenLines = lines.filter((l) => l.startsWith("  "));
    expect(tokenLines.length).toBeGreaterThan(10);
    // most tokens have an active feature, printed as f<index>=<activation>, strongest first
    const withFeatures = tokenLines.filter((l) => /f\d+=\d/.test(l));
    expect(withFeatures.length).toBeGreaterThan(tokenLines.length / 2);
    for (const l of withFeatures) {
      const acts = [...l.matchAll(/f\d+=(\d+\.\d+)/g)].map((m) => Number(m[1]));
      expect(acts.length).toBeLessThanOrEqual(3);
      for (let i = 1; i < acts.length; i++) expect(acts[i]).toBeLessThanOrEqual(acts[i - 1]);
    }
  });
});
