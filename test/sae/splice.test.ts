// Loss recovered with a model (spliceEvalSae, `qsae eval-sae --model`): on the bundled default model, an SAE
// that reconstructs exactly (relu with W_enc = [I, -I], W_dec = [I; -I]) recovers all the loss (ce_score 1,
// KL 0); one whose decoder is zero is exactly the zero ablation (ce_score 0); a trained one lies in between.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { saveSafetensors } from "../../src/io/safetensors.js";
import { Model } from "../../src/model/model.js";
import { Tokenizer } from "../../src/model/tokenizer.js";
import { defaultModelDir } from "../../src/pipeline/demo.js";
import { Sae } from "../../src/sae/index.js";
import { spliceEvalSae, spliceEvalSaes } from "../../src/sae/splice.js";
import { Tensor } from "../../src/tensor.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("qsae-splice-");
const modelDir = defaultModelDir();
const PROMPTS = [
  "def add(a, b):\n    return a + b\n",
  "import os\nfor name in os.listdir('.'):\n    print(name)\n",
  "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
];

// An SAELens-style folder (architecture "standard" = relu, hook name blocks.L.hook_resid_post).
async function writeSae(name: string, D: number, layer: number, decoder: "identity" | "zero"): Promise<string> {
  const out = join(dir, name);
  mkdirSync(out, { recursive: true });
  const S = 2 * D;
  const enc = new Float32Array(D * S);
  const dec = new Float32Array(S * D);
  for (let i = 0; i < D; i++) {
    enc[i * S + i] = 1;
    enc[i * S + D + i] = -1;
    if (decoder === "identity") {
      dec[i * D + i] = 1;
      dec[(D + i) * D + i] = -1;
    }
  }
  await saveSafetensors(join(out, "sae_weights.safetensors"), {
    W_enc: Tensor.from(enc, [D, S]),
    b_enc: Tensor.from(new Float32Array(S), [S]),
    W_dec: Tensor.from(dec, [S, D]),
    b_dec: Tensor.from(new Float32Array(D), [D]),
  });
  const cfg = { architecture: "standard", d_in: D, d_sae: S, dtype: "float32", apply_b_dec_to_input: false, normalize_activations: "none", hook_name: `blocks.${layer}.hook_resid_post`, hook_layer: layer };
  writeFileSync(join(out, "cfg.json"), JSON.stringify(cfg));
  return out;
}

describe("SAE spliced into the model's forward pass", () => {
  let model: Model;
  let ids: number[][];
  let D: number;
  const layer = 1;
  beforeAll(async () => {
    model = await Model.load(modelDir, { precision: "fp32" });
    D = model.info.hiddenSize;
    const tok = await Tokenizer.fromModelDir(modelDir);
    ids = PROMPTS.map((p) => tok.encode(p));
  });
  afterAll(() => model?.dispose());

  it("an exact reconstruction recovers all the loss; a zero decoder is the zero ablation", async () => {
    const exact = await Sae.load(await writeSae("identity", D, layer, "identity"));
    const r = await spliceEvalSae(model, exact, ids, { batchSize: 2 });
    expect(r.hook).toBe("resid_post");
    expect(r.layer).toBe(layer);
    expect(r.tokens).toBe(ids.reduce((a, s) => a + s.length - 1, 0));
    expect(r.ce_zero).toBeGreaterThan(r.ce_orig + 0.1); // zeroing the residual stream hurts
    expect(Math.abs(r.ce_sae - r.ce_orig)).toBeLessThan(1e-5);
    expect(r.kl_sae).toBeLessThan(1e-6);
    expect(r.ce_score).toBeCloseTo(1, 4);
    expect(r.kl_zero).toBeGreaterThan(0.01);
    exact.dispose();

    const zero = await Sae.load(await writeSae("zero", D, layer, "zero"));
    const z = await spliceEvalSae(model, zero, ids, { batchSize: 3 });
    expect(z.ce_orig).toBeCloseTo(r.ce_orig, 6); // batching and padding do not change the clean loss
    expect(Math.abs(z.ce_sae - z.ce_zero)).toBeLessThan(1e-6);
    expect(z.ce_score).toBeCloseTo(0, 4);
    expect(z.kl_sae).toBeCloseTo(z.kl_zero, 6);
    zero.dispose();
  });

  it("several SAEs of one site in one pass give what each gives alone", async () => {
    const exact = await Sae.load(await writeSae("many-identity", D, layer, "identity"));
    const zero = await Sae.load(await writeSae("many-zero", D, layer, "zero"));
    const [a, b] = await spliceEvalSaes(model, [exact, zero], ids, { batchSize: 2 });
    const a1 = await spliceEvalSae(model, exact, ids, { batchSize: 2 });
    const b1 = await spliceEvalSae(model, zero, ids, { batchSize: 2 });
    for (const [many, one] of [[a, a1], [b, b1]] as const) {
      expect(many.tokens).toBe(one.tokens);
      for (const k of ["ce_orig", "ce_sae", "ce_zero", "kl_sae", "kl_zero"] as const) expect(many[k]).toBeCloseTo(one[k], 9);
    }
    expect(a.ce_score).toBeCloseTo(1, 4);
    expect(b.ce_score).toBeCloseTo(0, 4);
    const other = await Sae.load(await writeSae("many-other-layer", D, layer + 1, "identity"));
    await expect(spliceEvalSaes(model, [exact, other], ids)).rejects.toThrow(/all SAEs must read the same site/);
    await expect(spliceEvalSaes(model, [], ids)).rejects.toThrow(/need at least one SAE/);
    for (const s of [exact, zero, other]) s.dispose();
  });

  it("bad input: layer out of range, SAE width mismatch", async () => {
    const exact = await Sae.load(await writeSae("identity-l", D, layer, "identity"));
    await expect(spliceEvalSae(model, exact, ids, { layer: 99 })).rejects.toThrow(/layer: 99 is not a layer of this model/);
    exact.dispose();
    const narrow = await Sae.load(await writeSae("narrow", D / 2, layer, "identity"));
    await expect(spliceEvalSae(model, narrow, ids)).rejects.toThrow(/SAE d_in \d+ does not match the model's hidden size/);
    narrow.dispose();
  });

  it("qsae eval-sae --model --prompts --json reports ce_score and KL", async () => {
    const sae = await writeSae("cli-identity", D, layer, "identity");
    const prompts = join(dir, "prompts.jsonl");
    writeFileSync(prompts, PROMPTS.map((p) => JSON.stringify({ prompt: p })).join("\n") + "\n");
    const r = runCli(["eval-sae", sae, "--model", modelDir, "--precision", "fp32", "--prompts", prompts, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.ce_score).toBeCloseTo(1, 4);
    expect(j.kl_sae).toBeLessThan(1e-6);
    expect(j.ce_zero).toBeGreaterThan(j.ce_orig);
    const bad = runCli(["eval-sae", sae, "--model", modelDir]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--model needs --prompts/);
  });
});
