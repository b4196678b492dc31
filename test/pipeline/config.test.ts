// Experiment configs: validation messages name the key path and what was expected; defaults; layer
// aliases; the plan's cells and how a changed option changes only the keys that depend on it.
import { writeFileSync } from "node:fs";
import { join } from "node:path";

import { describe, expect, it } from "vitest";

import { loadConfig, parseConfig, resolveLayers } from "../../src/pipeline/config.js";
import { buildPlan, saeGrid, transferPairs } from "../../src/pipeline/plan.js";
import { haveShared, sharedPath, sharedSkipReason } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("qsae-config-");
const write = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const problems = (raw: unknown) => {
  try {
    parseConfig(raw, dir, "exp.yaml");
  } catch (e) {
    return (e as Error).message;
  }
  return "";
};

describe("experiment config", () => {
  it("fills the documented defaults and resolves paths against the config's folder", () => {
    const c = loadConfig(write("min.yaml", "models: [m]\nprompts: p.txt\n"));
    expect(c.precisions).toEqual(["bf16", "fp16", "int8", "nf4"]);
    expect(c.reference).toBe("bf16");
    expect(c.hooks).toEqual(["resid_post"]);
    expect(c.layers).toEqual(["early", "middle", "late"]);
    expect(c.sae).toMatchObject({ type: "relu", expansions: [0.5], l1: [5e-4], seeds: [0] });
    expect(c.transfer).toEqual({ align: true, k: 10 });
    expect(c.splice).toEqual({ enabled: true, prompts: 64, max_tokens: 128 });
    expect(c.models).toEqual([{ path: join(dir, "m"), name: "m", devices: 1 }]);
    expect(c.prompts).toBe(join(dir, "p.txt"));
    expect(transferPairs(c)).toEqual([
      { sae: "bf16", a: "bf16", b: "fp16" },
      { sae: "bf16", a: "bf16", b: "int8" },
      { sae: "bf16", a: "bf16", b: "nf4" },
    ]);
  });

  it("reads JSON too, and names the file on a syntax error", () => {
    const c = loadConfig(write("c.json", JSON.stringify({ models: [{ path: "/x/y", name: "y" }], prompts: "/p.jsonl", precisions: ["bf16", "nf4"] })));
    expect(c.precisions).toEqual(["bf16", "nf4"]);
    expect(() => loadConfig(write("bad.yaml", "models: [a\nprompts: x\n"))).toThrow(/bad\.yaml: not valid YAML/);
    expect(() => loadConfig(join(dir, "nope.yaml"))).toThrow(/nope\.yaml: config file not found/);
  });

  it("names the path of every bad key and what was expected", () => {
    const msg = problems({
      models: [{ path: 3 }],
      prompts: "p.txt",
      precisions: ["bf16", "int3"],
      sae: { expansions: "2", type: "topk" },
      benchmarks: { humaneval: { limit: -1, data: "h.jsonl" } },
      extra: 1,
    });
    expect(msg).toMatch(/^exp\.yaml: invalid experiment config:/);
    expect(msg).toMatch(/models\[0\]/);
    expect(msg).toMatch(/precisions\[1\]: .*(bf16|expected one of)/);
    expect(msg).toMatch(/sae\.expansions: .*expected array/i);
    expect(msg).toMatch(/benchmarks\.humaneval\.limit: .*(>0|positive|too small)/i);
    expect(msg).toMatch(/unknown key 'extra'/);
  });

  it("checks cross-field rules: reference and transfer pairs among the precisions, k only and always for top-k SAEs, epochs xor tokens", () => {
    expect(problems({ models: ["m"], prompts: "p", precisions: ["fp16", "nf4"] })).toMatch(/reference: reference precision bf16 is not in precisions/);
    expect(problems({ models: ["m"], prompts: "p", transfer: { pairs: [{ b: "fp4" }] } })).toMatch(/transfer\.pairs\[0\]\.b: precision fp4 is not in precisions/);
    expect(problems({ models: ["m"], prompts: "p", sae: { type: "topk" } })).toMatch(/sae\.k: topk and batchtopk SAEs need k/);
    expect(problems({ models: ["m"], prompts: "p", sae: { type: "relu", k: 8 } })).toMatch(/sae\.k: k applies to topk and batchtopk SAEs only/);
    expect(problems({ models: ["m"], prompts: "p", sae: { epochs: 3, tokens: 100 } })).toMatch(/sae: give epochs or tokens, not both/);
    expect(problems({ models: ["a/m", "b/m"], prompts: "p" })).toMatch(/two models are named 'm'/);
    expect(problems({ models: ["m"], prompts: "p", splice: { max_tokens: 1, prompt: 3 } })).toMatch(/splice\.max_tokens: .*(>=2|too small)[\s\S]*splice: unknown key 'prompt'/i);
  });

  it("resolves layer indices, negative indices, fractions and early/middle/late", () => {
    expect(resolveLayers(["early", "middle", "late"], 12)).toEqual([2, 6, 9]);
    expect(resolveLayers([0, -1, 0.25, "middle"], 12)).toEqual([0, 3, 6, 11]);
    expect(resolveLayers(["early", "middle", "late"], 1)).toEqual([0]);
    expect(() => resolveLayers([12], 12)).toThrow(/layers\[0\]: layer 12 is out of range for a model with 12 layers/);
  });

  it("builds the grid of SAEs: expansions × L1 × seeds for relu; k names top-k SAEs", () => {
    const c = parseConfig({ models: ["m"], prompts: "p", sae: { expansions: [0.5, 2], l1: [1e-4, 5e-4], seeds: [0, 1] } }, dir);
    const g = saeGrid(c);
    expect(g).toHaveLength(8);
    expect(g[0].name).toBe("relu-x0.5-l1_0.0001-s0");
    const t = saeGrid(parseConfig({ models: ["m"], prompts: "p", sae: { type: "topk", k: 8, expansions: [1], l1: [1e-4, 5e-4] } }, dir));
    expect(t.map((x) => x.name)).toEqual(["topk-x1-k8-s0"]);
  });
});

describe.skipIf(!haveShared)(`plan (${haveShared ? "shared fixtures" : sharedSkipReason})`, () => {
  const prompts = write("prompts.txt", "def add(a, b):\nclass Stack:\n");
  const he = sharedPath("datasets/humaneval/HumanEval.jsonl.gz");
  const cfg = (extra: Record<string, unknown> = {}) =>
    parseConfig(
      {
        models: [sharedPath("models/tiny-qwen3"), { path: sharedPath("models/tiny-gpt2"), name: "gpt2" }],
        prompts,
        layers: [0, "late"],
        sae: { expansions: [0.5, 2] },
        benchmarks: { humaneval: { data: he, limit: 3 } },
        ...extra,
      },
      dir,
    );

  it("has one extract per model×precision, one train per site, transfers, alignments, benchmarks and comparisons", () => {
    const p = buildPlan(cfg());
    const count = (s: string) => p.cells.filter((c) => c.stage === s).length;
    // tiny-qwen3: 2 layers → sites 0 and 1 (late = round(0.8)); tiny-gpt2: 1 layer → site 0
    expect(p.layers).toEqual({ "tiny-qwen3": [0, 1], gpt2: [0] });
    expect(count("extract")).toBe(8);
    expect(count("train")).toBe(4 * 3);
    expect(count("transfer")).toBe(3 * 3);
    expect(count("align")).toBe(3 * 3);
    expect(count("bench")).toBe(8);
    expect(count("compare")).toBe(6);
    expect(count("splice")).toBe(4 * 2); // one per model and precision, all its sites in one model load
    const t = p.cells.find((c) => c.id === "transfer:gpt2:resid_post.0:bf16:bf16->nf4")!;
    expect(t.deps.sort()).toEqual(["extract:gpt2:bf16", "extract:gpt2:nf4", "train:gpt2:bf16:resid_post.0"]);
    const s = p.cells.find((c) => c.id === "splice:tiny-qwen3:nf4")!;
    expect(s.deps.sort()).toEqual([
      "train:tiny-qwen3:bf16:resid_post.0",
      "train:tiny-qwen3:bf16:resid_post.1",
      "train:tiny-qwen3:nf4:resid_post.0",
      "train:tiny-qwen3:nf4:resid_post.1",
    ]);
    expect(s.params).toMatchObject({
      sites: [{ hook: "resid_post", layer: 0 }, { hook: "resid_post", layer: 1 }],
      precision: "nf4",
      reference: "bf16",
      prompts: 64,
      max_tokens: 128,
      quantization: { blocksize: 64, double_quant: false },
    });
    expect(p.cells.find((c) => c.id === "splice:gpt2:bf16")!.deps).toEqual(["train:gpt2:bf16:resid_post.0"]);
    expect(buildPlan(cfg({ splice: { enabled: false } })).cells.some((c) => c.stage === "splice")).toBe(false);
    // dependencies come before dependents
    const pos = new Map(p.cells.map((c, i) => [c.id, i]));
    for (const c of p.cells) for (const d of c.deps) expect(pos.get(d)!).toBeLessThan(pos.get(c.id)!);
  });

  it("a model split over devices: its model-loading cells span that many devices, keys unchanged", async () => {
    const split = buildPlan(
      cfg({ models: [{ path: sharedPath("models/tiny-qwen3"), devices: 2 }, { path: sharedPath("models/tiny-gpt2"), name: "gpt2" }], devices: ["cpu", "cpu:0"] }),
    );
    const plain = buildPlan(cfg());
    expect(split.cells.map((c) => c.key)).toEqual(plain.cells.map((c) => c.key));
    const spans = (id: string) => split.cells.find((c) => c.id === id)!.devices ?? 1;
    expect(spans("extract:tiny-qwen3:nf4")).toBe(2);
    expect(spans("splice:tiny-qwen3:nf4")).toBe(2);
    expect(spans("bench:tiny-qwen3:nf4:humaneval")).toBe(2);
    expect(spans("train:tiny-qwen3:nf4:resid_post.1")).toBe(1);
    expect(spans("extract:gpt2:nf4")).toBe(1);
    const { checkExperiment } = await import("../../src/pipeline/check.js");
    const bad = await checkExperiment(cfg({ models: [{ path: sharedPath("models/tiny-qwen3"), devices: 3 }] }), { deep: false });
    expect(bad.problems.join("\n")).toMatch(/devices: 3, but the run has 1 device\(s\) \(cpu\)/);
  });

  it("changing the int8 threshold re-keys only int8 cells and what depends on them", () => {
    const a = buildPlan(cfg());
    const b = buildPlan(cfg({ quantization: { int8_threshold: 4 } }));
    const changed = b.cells.filter((c, i) => c.key !== a.cells[i].key).map((c) => c.id);
    expect(changed.length).toBeGreaterThan(0);
    for (const id of changed) expect(id).toMatch(/int8/);
    expect(changed).toContain("extract:gpt2:int8");
    expect(changed).toContain("align:gpt2:resid_post.0:bf16~int8");
    expect(changed).toContain("compare:gpt2:humaneval:bf16->int8");
    // a benchmark limit re-keys only benchmark cells
    const c = buildPlan(cfg({ benchmarks: { humaneval: { data: he, limit: 4 } } }));
    const changed2 = c.cells.filter((x, i) => x.key !== a.cells[i].key).map((x) => x.stage);
    expect(new Set(changed2)).toEqual(new Set(["bench", "compare"]));
    // the splice prompt count re-keys only splice cells
    const d = buildPlan(cfg({ splice: { prompts: 8 } }));
    expect(new Set(d.cells.filter((x, i) => x.key !== a.cells[i].key).map((x) => x.stage))).toEqual(new Set(["splice"]));
  });

  it("reports a missing benchmark data path and a model folder without config.json", () => {
    expect(() => buildPlan(cfg({ benchmarks: { humaneval: { data: join(dir, "missing.jsonl") } } }))).toThrow(/benchmarks\.humaneval\.data: .*missing\.jsonl does not exist/);
    expect(() => buildPlan(cfg({ models: [dir] }))).toThrow(/config\.json: missing \(not a Hugging Face model folder\)/);
  });
});
