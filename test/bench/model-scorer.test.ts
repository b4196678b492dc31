// The model-driven parts of the benchmarks with a stand-in model (logits a known function of the
// input): MMLU letter log-probabilities, single- and multi-token letters, left padding, and HumanEval's
// generation → execution pipeline with a stand-in generator.
import "./python.js";
import { describe, expect, it } from "vitest";

import { runGsm8k } from "../../src/bench/gsm8k.js";
import { runHumanEval } from "../../src/bench/humaneval.js";
import { modelChoiceScorer } from "../../src/bench/model.js";
import type { LanguageModel } from "../../src/model/generate.js";
import type { Tokenizer } from "../../src/model/tokenizer.js";
import { Tensor } from "../../src/tensor.js";
import { haveShared, repoRoot, sharedPath } from "../helpers/shared.js";
import { join } from "node:path";

const V = 128;
// logits of the next token after a sequence: depend on the last token and the sequence length
const logitsAfter = (seq: number[]) => {
  const last = seq[seq.length - 1];
  return Array.from({ length: V }, (_, v) => Math.sin(0.37 * v + 0.11 * last) * 3 + ((v * seq.length) % 7) * 0.1);
};
const logSoftmax = (x: number[]) => {
  const m = Math.max(...x);
  const lse = m + Math.log(x.reduce((s, v) => s + Math.exp(v - m), 0));
  return x.map((v) => v - lse);
};

/** A stand-in model: reads the unpadded rows through the attention mask. */
function standIn(calls: number[][][]): LanguageModel {
  return {
    info: { vocabSize: V, maxPositions: 64, bosTokenId: null, eosTokenIds: [0], padTokenId: 0 },
    async forward(ids, opts) {
      const [B, T] = ids.shape;
      const idv = ids.toTypedArray() as BigInt64Array;
      const mv = opts!.attentionMask!.toTypedArray() as BigInt64Array;
      expect(opts!.lastOnly).toBe(true);
      const out = new Float32Array(B * V);
      const seqs: number[][] = [];
      for (let b = 0; b < B; b++) {
        const seq: number[] = [];
        for (let t = 0; t < T; t++) if (mv[b * T + t] === 1n) seq.push(Number(idv[b * T + t]));
        // left padding: the mask is 0...0 1...1
        expect([...mv.slice(b * T, (b + 1) * T)].join("")).toMatch(/^0*1+$/);
        seqs.push(seq);
        out.set(logitsAfter(seq), b * V);
      }
      calls.push(seqs);
      return { logits: Tensor.from(out, [B, 1, V]) };
    },
    createCache: () => ({ length: 0, dispose() {} }),
  };
}

/** Byte-level stand-in tokenizer: " A" is two tokens (space, letter), like a small BPE. */
const byteTok = { encode: (s: string) => [...Buffer.from(s, "latin1")].map((b) => b % V) } as unknown as Tokenizer;

describe("bench with stand-in models", () => {
  it("MMLU scorer: summed log-probs of multi-token letters, one forward per distinct prefix", async () => {
    const calls: number[][][] = [];
    const scorer = modelChoiceScorer(standIn(calls), byteTok);
    const prompts = ["Q: 1+1?\nAnswer:", "Longer question here?\nAnswer:"];
    const lp = await scorer.score(prompts);
    // prefixes: [] and [32] (" "): two forwards of the batch
    expect(calls.length).toBe(2);
    prompts.forEach((p, b) => {
      const ids = byteTok.encode(p);
      const first = logSoftmax(logitsAfter(ids))[32];
      "ABCD".split("").forEach((L, c) => {
        const second = logSoftmax(logitsAfter([...ids, 32]))[L.charCodeAt(0)];
        expect(lp[b][c]).toBeCloseTo(first + second, 4);
      });
    });
    expect(scorer.countTokens("abc")).toBe(3);
    expect(scorer.maxPositions).toBe(64);
    // prompts longer than the context keep their last tokens
    calls.length = 0;
    await scorer.score(["x".repeat(100) + "Answer:"]);
    expect(calls[0][0].length).toBe(64 - 2);
  });

  it.skipIf(!haveShared)("MMLU scorer: single-token letters (GPT-2's tokenizer) use one forward", async () => {
    const { Tokenizer } = await import("../../src/model/tokenizer.js");
    const tok = await Tokenizer.fromModelDir(sharedPath("models/tiny-gpt2"));
    const ids = ["A", "B", "C", "D"].map((l) => tok.encode(` ${l}`, { addSpecialTokens: false }));
    expect(ids.every((x) => x.length === 1)).toBe(true);
    const calls: number[][][] = [];
    const fake = standIn(calls);
    // GPT-2 ids exceed the stand-in vocabulary: widen it
    const W = 50257;
    const model: LanguageModel = {
      ...fake,
      info: { ...fake.info, vocabSize: W, maxPositions: 1024 },
      async forward(x, o) {
        const [B] = x.shape;
        const out = new Float32Array(B * W);
        for (let b = 0; b < B; b++) for (let v = 0; v < W; v++) out[b * W + v] = v === ids[b % 4][0] ? 5 : 0;
        calls.push([]);
        expect(o?.lastOnly).toBe(true);
        return { logits: Tensor.from(out, [B, 1, W]) };
      },
    };
    const s = modelChoiceScorer(model, tok);
    const lp = await s.score(["a", "b", "c", "d"]);
    expect(calls.length).toBe(1);
    expect(lp.map((r) => r.indexOf(Math.max(...r)))).toEqual([0, 1, 2, 3]);
  });

  it("HumanEval: completions are cut at stop sequences, executed while later batches generate", async () => {
    const data = sharedPath("datasets/humaneval/HumanEval.jsonl.gz");
    if (!haveShared) return;
    const { loadHumanEval, splitPromptTail } = await import("../../src/bench/humaneval.js");
    // the model is given each prompt without its trailing whitespace, and generates that whitespace itself
    const probs = new Map(loadHumanEval(data).map((p) => [splitPromptTail(p.prompt).head, p]));
    const order: string[] = [];
    const r = await runHumanEval({
      data,
      limit: 6,
      batchSize: 4,
      timeoutMs: 20_000,
      complete: async (prompts, req) => {
        expect(req.stop).toContain("\ndef ");
        expect(req.temperature).toBe(0);
        order.push(`gen ${prompts.length}`);
        // canonical solution followed by junk a base model would ramble on with
        for (const p of prompts) expect(p).toBe(p.trimEnd());
        return prompts.map((p, i) => ({
          completion: i === 1 ? "    return 'wrong'\n" : `${splitPromptTail(probs.get(p)!.prompt).tail}${probs.get(p)!.canonical_solution}\n\ndef junk():\n    pass\n`,
          finishReason: "length",
        }));
      },
      onProgress: (p) => order.push(`${p.phase} ${p.done}`),
    });
    expect(r.n).toBe(6);
    expect(r.items.map((i) => i.passed)).toEqual([true, false, true, true, true, false]);
    expect(r.items[0].completion).not.toMatch(/junk/);
    expect(r.score).toBeCloseTo(4 / 6, 12);
    // the second batch was requested before all programs of the first had finished
    expect(order.indexOf("gen 2")).toBeLessThan(order.indexOf("execute 4"));
  });

  it("HumanEval: several samples per task give pass@k with sampling; chat answers give their code block", async () => {
    const data = join(repoRoot, "data/tasks/humaneval.jsonl");
    const { loadHumanEval, splitPromptTail } = await import("../../src/bench/humaneval.js");
    const probs = new Map(loadHumanEval(data).map((p) => [splitPromptTail(p.prompt).head, p]));
    let calls = 0;
    const r = await runHumanEval({
      data,
      limit: 3,
      samplesPerTask: 3,
      batchSize: 3,
      seed: 5,
      timeoutMs: 20_000,
      complete: async (prompts, req) => {
        expect(req.temperature).toBe(0.8);
        calls++;
        // the first round (one prompt per task) right, the next two rounds wrong
        return prompts.map((p) => ({ completion: calls === 1 ? `\n${probs.get(p)!.canonical_solution!}` : "    return None\n" }));
      },
    });
    expect(r.items.length).toBe(9);
    expect(r.passAtK!["pass@1"]).toBeCloseTo(1 / 3, 12);
    expect(r.passAtK!["pass@10"]).toBeUndefined();
    expect(r.ciMethod).toBe("bootstrap");
    const chat = await runHumanEval({
      data,
      limit: 2,
      chat: true,
      timeoutMs: 20_000,
      complete: async (prompts, req) => {
        expect(req.chat).toBe(true);
        expect(req.stop).toEqual([]);
        return prompts.map((p) => {
          const prob = [...probs.values()].find((x) => p.includes(x.prompt))!;
          const name = prob.entry_point;
          const args = prob.prompt.slice(prob.prompt.indexOf("(") + 1, prob.prompt.indexOf(")"));
          return { completion: `Sure:\n\n\`\`\`python\ndef ${name}(${args}):\n${prob.canonical_solution}\`\`\`\nThis works.` };
        });
      },
    });
    expect(chat.items.map((i) => i.result)).toEqual(["passed", "passed"]);
  });

  it("GSM8K: 8-shot prompts from train.jsonl, answers taken from the generation", async () => {
    const data = join(repoRoot, "data/tasks/gsm8k");
    let seen = "";
    const r = await runGsm8k({
      data,
      limit: 4,
      batchSize: 3,
      complete: async (prompts, req) => {
        seen = prompts[0];
        expect(req.stop).toContain("Question:");
        // right for even questions, rambling into the next question for odd ones
        return prompts.map((p, i) => ({ completion: i % 2 === 0 ? " 5 + 3 = 8.\n#### 8" : " I think 41.\n\nQuestion: what is 8?" }));
      },
    });
    expect(seen.split("Question: ").length - 1).toBe(9);
    expect(seen.endsWith("Answer:")).toBe(true);
    expect(r.n).toBe(4);
    expect(r.items[0]).toMatchObject({ passed: true, answer: "8", reference: "8" });
    expect(r.items[1]).toMatchObject({ passed: false, answer: "41", completion: " I think 41.\n\n" });
  });

  it("GSM8K: shots that would overflow the context are dropped", async () => {
    const data = join(repoRoot, "data/tasks/gsm8k");
    const shotsSeen: number[] = [];
    const complete = Object.assign(
      async (prompts: string[]) => {
        for (const p of prompts) {
          shotsSeen.push(p.split("Question: ").length - 2);
          expect(p.length + 100).toBeLessThanOrEqual(600);
        }
        return prompts.map(() => ({ completion: "#### 8" }));
      },
      // one token per character; 600 positions minus 100 new tokens leave 500 for the prompt
      { maxPositions: 600, countTokens: (t: string) => t.length },
    );
    const r = await runGsm8k({ data, limit: 3, maxNewTokens: 100, complete });
    expect(shotsSeen.length).toBe(3);
    for (const k of shotsSeen) {
      expect(k).toBeGreaterThanOrEqual(0);
      expect(k).toBeLessThan(8);
    }
    expect(r.meta.settings.shotsUsedMin).toBe(Math.min(...shotsSeen));
  });
});
