// Activation extraction: a stand-in model whose captured values encode (token, position, hook, layer)
// and put NaN on padding shows which rows reach the store; then real models from ../shared: rows equal
// the model's own hidden states of each prompt run alone, and two precisions give token-aligned stores.
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { Tensor } from "../../src/index.js";
import { ActivationStore } from "../../src/model/activation-store.js";
import { batches, extractActivations } from "../../src/model/extract.js";
import type { ExtractModel } from "../../src/model/extract.js";
import { hashPrompts, parsePrompts, readPromptItems, readPrompts } from "../../src/model/prompts.js";
import { Tokenizer } from "../../src/model/tokenizer.js";
import { native } from "../../src/native/addon.js";
import { runCli } from "../helpers/cli.js";
import { haveShared, sharedPath } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const HOOKS = ["resid_pre", "resid_post", "attn_out", "mlp_out"];
const D = 4;

/** The value a stand-in capture holds for a real token. */
function value(token: number, pos: number, hook: string, layer: number, k: number): number {
  return token * 100 + pos + HOOKS.indexOf(hook) * 10000 + layer * 0.25 + k * 0.01;
}

class CaptureModel implements ExtractModel {
  readonly info = {
    path: "/models/stand-in",
    architecture: "StandIn",
    numLayers: 3,
    hiddenSize: D,
    vocabSize: 50,
    maxPositions: 32,
    bosTokenId: 1 as number | null,
    eosTokenIds: [2],
    padTokenId: 0 as number | null,
    precision: "fp32",
    computeDtype: "fp32",
    configHash: "c".repeat(64),
    weightsHash: "w".repeat(64),
  };
  batchShapes: number[][] = [];
  createCache() {
    return { length: 0, dispose() {} };
  }
  async forward(
    inputIds: Tensor,
    o?: { attentionMask?: Tensor; capture?: { hooks: string[]; layers: number[] }; logits?: boolean },
  ): Promise<{ logits: Tensor; captures?: Record<string, Tensor> }> {
    const [B, T] = inputIds.shape;
    this.batchShapes.push([B, T]);
    const ids = [...(inputIds.toTypedArray() as BigInt64Array)].map(Number);
    const mask = [...(o!.attentionMask!.toTypedArray() as BigInt64Array)].map(Number);
    const captures: Record<string, Tensor> = {};
    for (const h of o!.capture!.hooks) {
      for (const l of o!.capture!.layers) {
        const x = new Float32Array(B * T * D).fill(NaN);
        for (let b = 0; b < B; b++) {
          const first = mask.slice(b * T, (b + 1) * T).indexOf(1);
          for (let t = first; t < T; t++) {
            for (let k = 0; k < D; k++) x[(b * T + t) * D + k] = value(ids[b * T + t], t - first, h, l, k);
          }
        }
        captures[`${h}.${l}`] = Tensor.from(x, [B, T, D]);
      }
    }
    return { logits: Tensor.from(new Float32Array(B), [B, 1, 1]), captures };
  }
}

describe("extractActivations (stand-in model)", () => {
  const prompts = [[1, 5, 6, 7], [8, 9], [1, 3], [1], [4, 4, 4, 4, 4, 4, 4]];

  it("stores exactly the real tokens, in prompt order, skipping BOS, with the contract's manifest", async () => {
    const m = new CaptureModel();
    const out = join(dir, "stand-in");
    const manifest = await extractActivations(m, null, prompts, { out, layers: [2, 0], hooks: ["resid_post", "mlp_out"], shardRows: 4 });
    const want: [number, number, number][] = []; // doc, pos, token
    prompts.forEach((p, d) => p.forEach((t, j) => (j === 0 && t === 1 ? 0 : want.push([d, j, t]))));
    expect(manifest).toMatchObject({
      format: "qsae-activations",
      version: 1,
      model: { path: "/models/stand-in", architecture: "StandIn", config_hash: "c".repeat(64), weights_hash: "w".repeat(64) },
      precision: "fp32",
      hooks: ["resid_post", "mlp_out"],
      layers: [2, 0],
      d_model: D,
      dtype: "fp32",
      n_tokens: want.length,
      n_prompts: 5,
      prompts_hash: hashPrompts(prompts),
      skip_bos: true,
      quantization: null,
    });
    expect(manifest.shards.map((s) => s.rows)).toEqual([4, 4, 4, 1]);
    const store = await ActivationStore.open(out);
    expect([...(await store.docs())]).toEqual(want.map((w) => w[0]));
    expect([...(await store.positions())]).toEqual(want.map((w) => w[1]));
    expect([...(await store.tokens())].map(Number)).toEqual(want.map((w) => w[2]));
    for (const h of ["resid_post", "mlp_out"]) {
      for (const l of [2, 0]) {
        const got = (await store.read(h, l)).toTypedArray() as Float32Array;
        const exp = want.flatMap(([, pos, tok]) => Array.from({ length: D }, (_, k) => value(tok, pos, h, l, k)));
        expect([...got]).toEqual(exp.map(Math.fround));
      }
    }
  });

  it("gives the same rows whatever the batching; keeps BOS when asked; truncates to maxLength", async () => {
    const a = join(dir, "b-one");
    const b = join(dir, "b-many");
    const m = new CaptureModel();
    await extractActivations(m, null, prompts, { out: a, layers: [1], batchSize: 1 });
    expect(m.batchShapes.map((s) => s[0])).toEqual([1, 1, 1, 1, 1]);
    m.batchShapes = [];
    await extractActivations(m, null, prompts, { out: b, layers: [1], maxBatchTokens: 8 });
    expect(m.batchShapes).toEqual([[2, 4], [2, 2], [1, 7]]);
    const [sa, sb] = [await ActivationStore.open(a), await ActivationStore.open(b)];
    expect((await sb.read()).toTypedArray()).toEqual((await sa.read()).toTypedArray());
    expect(await sb.tokens()).toEqual(await sa.tokens());

    const keep = await extractActivations(m, null, prompts, { out: join(dir, "keep"), layers: [0], skipBos: false, maxLength: 3 });
    expect(keep.n_tokens).toBe(3 + 2 + 2 + 1 + 3);
    expect(keep.skip_bos).toBe(false);
    expect(keep.max_length).toBe(3);
    const s = await ActivationStore.open(join(dir, "keep"));
    expect([...(await s.positions())]).toEqual([0, 1, 2, 0, 1, 0, 1, 0, 0, 1, 2]);
  });

  it("rejects bad layers, hooks and targets before any work, and leaves nothing behind on abort", async () => {
    const m = new CaptureModel();
    const out = join(dir, "bad");
    await expect(extractActivations(m, null, prompts, { out, layers: [3] })).rejects.toThrow(/layers: 3 is not a layer of this model \(0\.\.2\)/);
    await expect(extractActivations(m, null, prompts, { out, layers: [0, 0] })).rejects.toThrow(/lists a layer twice/);
    await expect(extractActivations(m, null, prompts, { out, layers: [0], hooks: ["resid_mid" as never] })).rejects.toThrow(
      /unknown hook 'resid_mid'/,
    );
    await expect(extractActivations(m, null, [[60]], { out, layers: [0] })).rejects.toThrow(/prompt 0: token id 60 is outside/);
    await expect(extractActivations(m, null, ["text"], { out, layers: [0] })).rejects.toThrow(/string prompts need a tokenizer/);
    await expect(extractActivations(m, null, prompts, { out: join(dir, "b-one"), layers: [0] })).rejects.toThrow(/already exists/);
    const ac = new AbortController();
    let calls = 0;
    const p = extractActivations(m, null, prompts, {
      out,
      layers: [0],
      batchSize: 1,
      signal: ac.signal,
      onProgress: () => {
        if (++calls === 2) ac.abort();
      },
    });
    await expect(p).rejects.toThrow(/abort/i);
    expect(readdirSync(dir).filter((f) => f.startsWith("bad"))).toEqual([]);
  });
});

describe("prompt files", () => {
  it("reads .txt lines and .jsonl prompt/text fields, naming the file and line of a bad one", async () => {
    const txt = join(dir, "p.txt");
    writeFileSync(txt, "first prompt\r\n\nsecond  prompt \n");
    expect(await readPrompts(txt)).toEqual(["first prompt", "second  prompt "]);
    const jl = join(dir, "p.jsonl");
    writeFileSync(jl, '{"prompt": "a"}\n{"text": "b", "id": 3}\n\n');
    expect(await readPrompts(jl)).toEqual(["a", "b"]);
    writeFileSync(jl, '{"prompt": "a"}\n{"prompt": 3}\n');
    await expect(readPrompts(jl)).rejects.toThrow(/p\.jsonl:2: "prompt" is not a string/);
    writeFileSync(jl, '{"prompt": "a"}\n{"nope": 1}\n');
    await expect(readPrompts(jl)).rejects.toThrow(/p\.jsonl:2: no "prompt", "text" or "input_ids" field/);
    writeFileSync(jl, '{"input_ids": [1, 2]}\n{"input_ids": [3]}\n');
    expect(await readPromptItems(jl)).toEqual([[1, 2], [3]]);
    await expect(readPrompts(jl)).rejects.toThrow(/p\.jsonl: holds input_ids, but text prompts are needed/);
    writeFileSync(jl, '{"input_ids": [1, 2]}\n{"text": "x"}\n');
    await expect(readPromptItems(jl)).rejects.toThrow(/p\.jsonl:2: mixes text prompts with input_ids/);
    writeFileSync(jl, '{"input_ids": [1, -2]}\n');
    await expect(readPromptItems(jl)).rejects.toThrow(/p\.jsonl:1: "input_ids" must be a non-empty list of token ids/);
    writeFileSync(jl, '\n{"prompt": "a"\n');
    await expect(readPrompts(jl)).rejects.toThrow(/p\.jsonl:2: invalid JSON/);
    expect(() => parsePrompts("[1]", "jsonl", "X")).toThrow(/X:1: expected a JSON object/);
    expect(() => parsePrompts("\n\n", "txt", "E")).toThrow(/E: no prompts/);
    await expect(readPrompts(join(dir, "p.csv"))).rejects.toThrow(/p\.csv: unknown prompt file type '\.csv'/);
    await expect(readPrompts(join(dir, "none.txt"))).rejects.toThrow(/none\.txt: no such file/);
  });
});

const haveModel = haveShared && typeof (native() as unknown as Record<string, unknown>).loadModel === "function";
if (!haveModel) console.warn("qsae tests: no model runtime in the addon (or no ../shared): real-model extraction tests skipped");

describe.skipIf(!haveModel)("extraction with real models (../shared/models)", () => {
  it("tiny-gpt2: rows equal each prompt's own hidden states; fp32 and bf16 stores are token-aligned", async () => {
    const { Model } = await import("../../src/model/model.js");
    const path = sharedPath("models/tiny-gpt2");
    const tok = await Tokenizer.fromModelDir(path);
    const prompts = ["Hello world, this is a test.", "A", "The quick brown fox jumps over the lazy dog", "<|endoftext|>Second doc"];
    const stores: ActivationStore[] = [];
    for (const precision of ["fp32", "bf16"] as const) {
      const model = await Model.load(path, { precision });
      const out = join(dir, `gpt2-${precision}`);
      await extractActivations(model, tok, prompts, { out, layers: [0], hooks: ["resid_post", "resid_pre"], batchSize: 4, dtype: "fp32" });
      const store = await ActivationStore.open(out);
      stores.push(store);
      if (precision === "fp32") {
        // Independent path: each prompt alone, unpadded, through forward({hidden}) (hidden.0 = resid_post of block 0).
        const acts = (await store.read("resid_post", 0)).toTypedArray() as Float32Array;
        const docs = await store.docs();
        let row = 0;
        for (const [i, p] of prompts.entries()) {
          const ids = tok.encode(p);
          const input = Tensor.from(BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
          const r = await model.forward(input, { hidden: true });
          const h = r.hidden![0].toTypedArray() as Float32Array;
          const skip = ids[0] === 50256 ? 1 : 0;
          for (let j = skip; j < ids.length; j++, row++) {
            expect(docs[row]).toBe(i);
            for (let k = 0; k < 16; k++) expect(Math.abs(acts[row * 16 + k] - h[j * 16 + k])).toBeLessThan(1e-4);
          }
        }
        expect(row).toBe(store.nRows);
      }
      model.dispose();
    }
    const [a, b] = stores;
    expect(b.manifest.precision).toBe("bf16");
    expect(b.manifest.prompts_hash).toBe(a.manifest.prompts_hash);
    expect(b.manifest.model.weights_hash).toBe(a.manifest.model.weights_hash);
    expect(await b.tokens()).toEqual(await a.tokens());
    expect(await b.docs()).toEqual(await a.docs());
    expect(await b.positions()).toEqual(await a.positions());
    const x = (await a.read("resid_post", 0)).toTypedArray() as Float32Array;
    const y = (await b.read("resid_post", 0)).toTypedArray() as Float32Array;
    const scale = Math.max(...x.map(Math.abs));
    for (let i = 0; i < x.length; i++) expect(Math.abs(x[i] - y[i])).toBeLessThan(3e-2 * scale);
  });

  it("tiny-qwen3 from token ids: all hooks of two layers in one pass, nf4 aligned with fp32, bf16 storage", async () => {
    const { Model } = await import("../../src/model/model.js");
    const path = sharedPath("models/tiny-qwen3");
    const prompts = [[5, 6, 7, 8, 9, 10], [11], [12, 13, 14]];
    const outs: string[] = [];
    for (const precision of ["fp32", "nf4"] as const) {
      const model = await Model.load(path, { precision });
      const out = join(dir, `qwen3-${precision}`);
      const m = await extractActivations(model, null, prompts, { out, layers: [0, 1], hooks: HOOKS as never, dtype: "bf16", shardRows: 4 });
      expect(m.n_tokens).toBe(10);
      expect(m.dtype).toBe("bf16");
      outs.push(out);
      model.dispose();
    }
    const [a, b] = await Promise.all(outs.map((o) => ActivationStore.open(o)));
    expect(a.names).toHaveLength(8);
    expect(await b.tokens()).toEqual(await a.tokens());
    expect(await b.positions()).toEqual(await a.positions());
    expect(b.manifest.precision).toBe("nf4");
    expect(existsSync(join(outs[1], "shard-00002.safetensors"))).toBe(true);
  });
});

describe.skipIf(!haveModel)("qsae extract", () => {
  it("writes a store from a .txt prompt file with plain progress lines; bad lines and layers fail in one line", async () => {
    const env = { QSAE_THREADS: "1" };
    const prompts = join(dir, "cli.txt");
    writeFileSync(prompts, "Hello world\nThe quick brown fox\n\nA third prompt here\n");
    const out = join(dir, "cli-store");
    const r = runCli(["extract", sharedPath("models/tiny-gpt2"), "--precision", "fp32", "--layers", "0", "--hooks", "resid_post,mlp_out", "--prompts", prompts, "--out", out, "--dtype", "bf16"], { env });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/extract fp32: \d+\/\d+ tokens \(\d+ tokens\/s, eta \d+s\)/);
    expect(r.stderr).toMatch(/wrote .*cli-store: \d+ tokens from 3 prompts, 2 activations \[N, 16\] bf16/);
    const s = await ActivationStore.open(out);
    const tok = await Tokenizer.fromModelDir(sharedPath("models/tiny-gpt2"));
    expect(s.nRows).toBe(["Hello world", "The quick brown fox", "A third prompt here"].reduce((a, p) => a + tok.encode(p).length, 0));
    expect(s.manifest.hooks).toEqual(["resid_post", "mlp_out"]);
    expect(s.manifest.quantization).toBeNull();
    const again = runCli(["extract", sharedPath("models/tiny-gpt2"), "--layers", "0", "--prompts", prompts, "--out", out], { env });
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/cli-store: already exists/);

    const ids = join(dir, "ids.jsonl");
    writeFileSync(ids, '{"input_ids": [1, 2, 3]}\n{"input_ids": [4, 5]}\n');
    const q = runCli(["extract", sharedPath("models/tiny-qwen3"), "--precision", "nf4", "--layers", "0,1", "--prompts", ids, "--out", join(dir, "cli-nf4")], { env });
    expect(q.status, q.stderr).toBe(0);
    const m = (await ActivationStore.open(join(dir, "cli-nf4"))).manifest;
    expect(m.n_tokens).toBe(5);
    // The settings the model reports it holds (ModelInfo.quantization), not just the options passed.
    expect(m.quantization).toEqual({ type: "nf4", blocksize: 64, double_quant: false, int8_threshold: null, prequantized: false });

    const bad = join(dir, "bad.jsonl");
    writeFileSync(bad, '{"prompt": "ok"}\n{"prompt": 5}\n');
    const b = runCli(["extract", sharedPath("models/tiny-gpt2"), "--layers", "0", "--prompts", bad, "--out", join(dir, "x")], { env });
    expect(b.status).toBe(1);
    expect(b.stderr.trim().split("\n")).toHaveLength(1);
    expect(b.stderr).toMatch(/bad\.jsonl:2: "prompt" is not a string/);
    const l = runCli(["extract", sharedPath("models/tiny-gpt2"), "--layers", "0,5", "--prompts", prompts, "--out", join(dir, "y")], { env });
    expect(l.status).toBe(1);
    expect(l.stderr).toMatch(/layers: 5 is not a layer of this model \(0\.\.0\)/);
    expect(readdirSync(dir).filter((f) => f.startsWith("x") || f.startsWith("y"))).toEqual([]);
  });
});
