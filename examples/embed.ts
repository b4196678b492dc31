// Embedding qsae in another Node tool, with the public API only: load a model at NF4, capture activations
// for a few prompts, encode them with an SAE, and print the strongest features of every token.
//
//   node dist/examples/embed.js [MODEL_DIR] [SAE_DIR]
//
// Without SAE_DIR it first trains a small SAE (0.5x d_model) on the model's own activations of a few
// dozen prompts, which takes seconds for the bundled default model.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { defaultModelDir, extractActivations, findDemoData, Model, readPrompts, Sae, Tensor, Tokenizer, trainSae } from "../src/index.js";

export interface TokenFeatures {
  token: string;
  features: { index: number; activation: number }[];
}

/** Top `k` SAE features for every token of every prompt, from `layer`'s residual stream at NF4. */
export async function topFeatures(
  modelDir: string,
  prompts: string[],
  opts: { saeDir?: string; layer?: number; k?: number; trainPrompts?: string[] } = {},
): Promise<TokenFeatures[][]> {
  using model = await Model.load(modelDir, { precision: "nf4" });
  const tok = await Tokenizer.fromModelDir(modelDir);
  const layer = opts.layer ?? Math.floor(model.info.numLayers / 2);
  const k = opts.k ?? 3;

  let saeDir = opts.saeDir;
  const scratch = saeDir ? null : mkdtempSync(join(tmpdir(), "qsae-embed-"));
  try {
    if (!saeDir) {
      const store = join(scratch!, "acts");
      await extractActivations(model, tok, opts.trainPrompts ?? prompts, { out: store, layers: [layer], hooks: ["resid_post"], maxLength: 64 });
      const r = await trainSae({ acts: store, hook: "resid_post", layer, type: "relu", expansion: 0.5, l1: 5e-4, epochs: 20, batchSize: 256, seed: 0, out: join(scratch!, "sae") });
      saeDir = r.saes[0].folder;
    }
    using sae = await Sae.load(saeDir);
    const out: TokenFeatures[][] = [];
    for (const prompt of prompts) {
      const ids = tok.encode(prompt);
      using input = Tensor.from(BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
      const r = await model.forward(input, { capture: { hooks: ["resid_post"], layers: [layer] }, lastOnly: true });
      r.logits.dispose();
      using acts = r.captures![`resid_post.${layer}`];
      using feats = await sae.encode(acts);
      const [n, m] = feats.shape.slice(-2);
      const f = feats.toFloat64Array();
      const rows: TokenFeatures[] = [];
      for (let t = 0; t < n; t++) {
        const row = Array.from(f.subarray(t * m, (t + 1) * m), (activation, index) => ({ index, activation }))
          .filter((x) => x.activation > 0)
          .sort((a, b) => b.activation - a.activation || a.index - b.index)
          .slice(0, k);
        rows.push({ token: tok.decode([ids[t]]), features: row });
      }
      out.push(rows);
    }
    return out;
  } finally {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const modelDir = process.argv[2] ?? defaultModelDir();
  const prompts = ["def fibonacci(n):\n    if n < 2:\n        return n", "for item in items:\n    total += item.price"];
  // the bundled prompt set trains the SAE (the first 64 prompts)
  const train = (await readPrompts(findDemoData().prompts)).slice(0, 64);
  const res = await topFeatures(modelDir, prompts, { saeDir: process.argv[3], trainPrompts: train });
  for (const [i, rows] of res.entries()) {
    process.stdout.write(`prompt ${i}\n`);
    for (const r of rows)
      process.stdout.write(`  ${JSON.stringify(r.token).padEnd(16)} ${r.features.map((f) => `f${f.index}=${f.activation.toFixed(3)}`).join("  ") || "(no active feature)"}\n`);
  }
}
