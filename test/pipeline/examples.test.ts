// The shipped example configs validate, and describe the seed's grid.
import { readdirSync } from "node:fs";
import { join } from "node:path";

import { describe, expect, it } from "vitest";

import { loadConfig } from "../../src/pipeline/config.js";
import { saeGrid } from "../../src/pipeline/plan.js";
import { repoRoot } from "../helpers/shared.js";

const files = readdirSync(join(repoRoot, "examples")).filter((f) => f.endsWith(".yaml"));

describe("examples/*.yaml", () => {
  it("ships the two seed configs and their full-benchmark variants", () => {
    expect(files).toEqual(expect.arrayContaining(["seed-qwen3-coder.yaml", "seed-qwen3-coder-full.yaml", "seed-starcoder2.yaml", "seed-starcoder2-full.yaml"]));
  });

  for (const f of files)
    it(`${f} is a valid experiment config`, () => {
      const c = loadConfig(join(repoRoot, "examples", f));
      expect(c.models.length).toBeGreaterThan(0);
      if (f.startsWith("seed-")) {
        expect(c.precisions).toEqual(["bf16", "fp16", "int8", "nf4"]);
        expect(c.layers.length).toBeGreaterThanOrEqual(7);
        expect(c.layers.length).toBeLessThanOrEqual(11);
        expect(saeGrid(c).map((g) => g.name)).toEqual(["relu-x0.5-l1_0.0005-s0"]);
        expect(c.sae.epochs).toBe(1000);
        expect(c.extraction.max_prompts).toBe(500);
        expect(c.splice).toMatchObject({ enabled: true, prompts: 64, max_tokens: 256 });
        const b = c.benchmarks;
        if (f.includes("-full")) {
          expect(b.humaneval?.limit).toBeUndefined();
          expect(b.gsm8k?.limit).toBeUndefined();
          expect(b.mmlu?.limit).toBeUndefined();
        } else {
          expect(b.humaneval?.limit).toBe(10);
          expect(b.gsm8k?.limit).toBe(15);
          expect(b.mmlu?.subjects).toBe("cs");
        }
      }
    });
});
