// qsae demo: a clear message without the bundled default model; with it, the quick variant runs the whole
// pipeline (4 precisions, 3 layers, SAEs 0.5x and 2x, transfer, alignment, loss recovered, 3 benchmarks) and
// writes the report.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { describe, expect, it } from "vitest";

import { defaultModelDir, demoConfig, findDemoData } from "../../src/pipeline/demo.js";
import { buildPlan } from "../../src/pipeline/plan.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("qsae-demo-");
const model = defaultModelDir();
const have = existsSync(join(model, "config.json"));

describe("qsae demo", () => {
  it("fails with a clear message when the default model is missing", () => {
    const r = runCli(["demo", "--out", join(dir, "none")], { env: { QSAE_DEMO_MODEL: join(dir, "no-model") } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/qsae demo: the bundled default model is missing \(expected .*no-model\/config\.json\)/);
    expect(existsSync(join(dir, "none"))).toBe(false);
  });

  it("finds the bundled prompt and task sets", () => {
    const d = findDemoData();
    expect(d.prompts).toMatch(/data\/prompts\/.+\.(jsonl|txt)$/);
    expect(d.humaneval).toMatch(/humaneval.*\.jsonl/);
    expect(d.gsm8k).toMatch(/gsm8k/);
    expect(d.mmlu).toMatch(/mmlu$/);
  });

  describe.skipIf(!have)(`on the bundled default model (${have ? model : "not there yet"})`, () => {
    it("plans 4 precisions × 3 layers, SAEs 0.5× and 2×, transfer, alignment, splicing and three benchmarks", () => {
      const p = buildPlan(demoConfig());
      const n = (s: string) => p.cells.filter((c) => c.stage === s).length;
      expect([n("extract"), n("train"), n("transfer"), n("align"), n("splice"), n("bench"), n("compare")]).toEqual([4, 12, 9, 9, 4, 12, 9]);
      expect(Object.values(p.layers)[0]).toHaveLength(3);
      expect(p.grid.map((g) => g.expansion)).toEqual([0.5, 2]);
    });

    it("--quick runs the whole pipeline and prints where report.html is", () => {
      const out = join(dir, "quick");
      const r = runCli(["demo", "--quick", "--out", out]);
      expect(r.stderr).not.toMatch(/✗/);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`report: ${join(out, "report.html")}`);
      const html = readFileSync(join(out, "report.html"), "utf8");
      expect(html).toContain("qsae demo");
      expect((html.match(/<figure class="chart"/g) ?? []).length).toBeGreaterThanOrEqual(4);
      expect(html).toContain("Loss recovered when the SAE is spliced in");
      expect(r.stdout).toMatch(/loss recovered, bf16 SAE/);
    }, 900_000);
  });
});
