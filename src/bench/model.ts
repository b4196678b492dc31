// Model-driven parts of the benchmarks: a CompletionFn over generate() (batched, KV cache), and the
// MMLU ChoiceScorer: next-token log-probabilities of " A", " B", " C", " D" from forward(lastOnly).
import { generate, type LanguageModel } from "../model/generate.js";
import type { Tokenizer } from "../model/tokenizer.js";
import { Tensor } from "../tensor.js";
import { LETTERS } from "./mmlu.js";
import type { ChoiceScorer, CompletionFn } from "./types.js";

/** Completions from the model through qsae's generate(); prompts go in batches of `batchSize`. */
export function modelCompletionFn(model: LanguageModel, tok: Tokenizer, opts: { batchSize?: number } = {}): CompletionFn {
  const fn: CompletionFn = async (prompts, req) => {
    const out = await generate(model, tok, prompts, {
      maxNewTokens: req.maxNewTokens,
      temperature: req.temperature,
      topP: req.topP,
      seed: req.seed,
      stop: req.stop.length ? req.stop : undefined,
      chat: req.chat,
      batchSize: opts.batchSize ?? prompts.length,
      signal: req.signal,
    });
    return out.map((r) => ({ completion: r.completion, finishReason: r.finishReason }));
  };
  fn.maxPositions = model.info.maxPositions;
  fn.countTokens = (text, chat) =>
    chat && tok.hasChatTemplate
      ? tok.encode(tok.applyChatTemplate([{ role: "user", content: text }], { addGenerationPrompt: true }), { addSpecialTokens: false }).length
      : tok.encode(text).length;
  return fn;
}

/** log-softmax of one row of logits, at the given ids. */
function logProbsAt(row: Float64Array | Float32Array, ids: number[]): number[] {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  const lse = max + Math.log(sum);
  return ids.map((id) => row[id] - lse);
}

/**
 * Scores " A".." D" after each prompt. When each letter is one token (the usual case), one forward with
 * lastOnly per batch; otherwise (a small BPE may split " A" into " " + "A") the log-probability of each
 * letter's token sequence, summed, with one lastOnly forward per distinct prefix of those sequences.
 * Prompts longer than the context keep their last tokens.
 */
export function modelChoiceScorer(model: LanguageModel, tok: Tokenizer): ChoiceScorer {
  const choices = LETTERS.map((l) => tok.encode(` ${l}`, { addSpecialTokens: false }));
  for (const [i, c] of choices.entries()) {
    if (c.length === 0) throw new Error(`the tokenizer encodes " ${LETTERS[i]}" to no tokens`);
  }
  const longest = Math.max(...choices.map((c) => c.length));
  const maxPositions = model.info.maxPositions;
  const pad = model.info.padTokenId ?? model.info.eosTokenIds[0] ?? 0;
  // distinct prefixes of the choice sequences, and for each the (choice, next token) pairs it scores
  const prefixes = new Map<string, { prefix: number[]; needs: { choice: number; token: number }[] }>();
  choices.forEach((c, ci) => {
    for (let j = 0; j < c.length; j++) {
      const key = c.slice(0, j).join(",");
      const e = prefixes.get(key) ?? { prefix: c.slice(0, j), needs: [] };
      e.needs.push({ choice: ci, token: c[j] });
      prefixes.set(key, e);
    }
  });

  async function lastLogits(seqs: number[][]): Promise<Float64Array[]> {
    const B = seqs.length;
    const T = Math.max(...seqs.map((s) => s.length));
    const ids = new BigInt64Array(B * T);
    const mask = new BigInt64Array(B * T);
    seqs.forEach((s, b) => {
      const off = T - s.length;
      for (let t = 0; t < T; t++) {
        ids[b * T + t] = BigInt(t < off ? pad : s[t - off]);
        mask[b * T + t] = t < off ? 0n : 1n;
      }
    });
    const idsT = Tensor.from(ids, [B, T]);
    const maskT = Tensor.from(mask, [B, T]);
    try {
      const r = await model.forward(idsT, { attentionMask: maskT, lastOnly: true });
      try {
        const flat = r.logits.toFloat64Array();
        const V = flat.length / B;
        return seqs.map((_, b) => flat.subarray(b * V, (b + 1) * V));
      } finally {
        r.logits.dispose();
      }
    } finally {
      idsT.dispose();
      maskT.dispose();
    }
  }

  return {
    maxPositions,
    countTokens: (text) => tok.encode(text).length,
    async score(prompts, signal) {
      const encoded = prompts.map((p) => {
        const ids = tok.encode(p);
        const room = maxPositions - longest;
        return ids.length > room ? ids.slice(ids.length - room) : ids;
      });
      const lp = prompts.map(() => [0, 0, 0, 0]);
      for (const { prefix, needs } of prefixes.values()) {
        signal?.throwIfAborted();
        const rows = await lastLogits(encoded.map((e) => [...e, ...prefix]));
        rows.forEach((row, b) => {
          const v = logProbsAt(row, needs.map((n) => n.token));
          needs.forEach((n, k) => (lp[b][n.choice] += v[k]));
        });
      }
      return lp;
    },
  };
}
