// Text generation over a Model: batches of prompts left-padded with an attention mask, one prefill and
// then one token per step through the KV cache, greedy or seeded sampling on the last position's logits,
// EOS ids from the config, stop strings, max_new_tokens, chat templates, and streaming through onToken.
import { InputError } from "../errors.js";
import type { JobOptions } from "../native/cancel.js";
import { Tensor } from "../tensor.js";
import { checkSamplingOptions, Rng, sampleToken } from "./sampling.js";
import type { ChatMessage, Tokenizer } from "./tokenizer.js";

/**
 * What generation and extraction need of a model: `Model` (src/model/model.ts) satisfies it. Kept
 * structural so tests can drive the loop with a small stand-in model.
 */
export interface LanguageModel {
  readonly info: {
    readonly vocabSize: number;
    readonly maxPositions: number;
    readonly bosTokenId: number | null;
    readonly eosTokenIds: readonly number[];
    readonly padTokenId: number | null;
  };
  forward(
    inputIds: Tensor,
    opts?: {
      attentionMask?: Tensor;
      /** whatever createCache() returned */
      cache?: unknown;
      lastOnly?: boolean;
      /** false: skip the logits (capture only) */
      logits?: boolean;
      capture?: { hooks: string[]; layers: number[] };
    },
  ): Promise<{ logits: Tensor; captures?: Record<string, Tensor> }>;
  createCache(): { readonly length: number; dispose(): void };
}

export interface GenerateOptions extends JobOptions {
  /** Tokens to generate at most per prompt (default 128). */
  maxNewTokens?: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  /** Nucleus sampling mass (default 1 = off). */
  topP?: number;
  /** Keep the k most likely tokens (default 0 = off). */
  topK?: number;
  /** Seed of the sampler (default: random). Prompt i draws from stream i, so results do not depend on batching. */
  seed?: number;
  /** Stop when the completion contains one of these; the completion is cut before it. */
  stop?: string[];
  /** Wrap each prompt as a user message in the tokenizer's chat template (with the generation prompt). */
  chat?: boolean;
  /** Chat mode: a system message placed before each prompt. */
  system?: string;
  /** Chat mode: extra template variables, e.g. `{ enable_thinking: false }`. */
  chatTemplateVariables?: Record<string, unknown>;
  /** Prompts per forward batch (default 8). */
  batchSize?: number;
  /** Extra EOS ids (the model's and tokenizer's are always used unless ignoreEos). */
  eosTokenIds?: number[];
  /** Keep generating through EOS (benchmarks of fixed length). */
  ignoreEos?: boolean;
  /** Streaming: called with each new piece of completion text of prompt `index` (stop strings are never streamed). */
  onToken?: (index: number, text: string) => void;
}

export type FinishReason = "stop" | "eos" | "length";

export interface GenerationResult {
  prompt: string;
  /** Generated text, cut before a stop string, without the EOS token. */
  completion: string;
  /** Generated token ids (the EOS token, when one ended generation, included). */
  tokens: number[];
  finishReason: FinishReason;
  /** Number of prompt tokens fed to the model (after the chat template and special tokens). */
  promptTokens: number;
}

/** Result of generateIds: tokens only, no text. */
export interface TokenGenerationResult {
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
}

interface Row {
  index: number;
  prompt: number[];
  tokens: number[];
  done: boolean;
  finish: FinishReason;
  rng: Rng | null;
  text: string;
  emitted: number;
}

/**
 * Generates a completion for each prompt. Prompts are encoded with the tokenizer's special tokens
 * (or, with `chat`, rendered through its chat template); batches are left-padded.
 */
export async function generate(
  model: LanguageModel,
  tok: Tokenizer,
  prompts: string[],
  o: GenerateOptions = {},
): Promise<GenerationResult[]> {
  if (o.chat && !tok.hasChatTemplate) throw new InputError(`${tok.source}: --chat needs a chat_template, and this tokenizer has none`);
  const ids = prompts.map((p) => {
    if (!o.chat) return tok.encode(p);
    const messages: ChatMessage[] = o.system !== undefined ? [{ role: "system", content: o.system }] : [];
    messages.push({ role: "user", content: p });
    const text = tok.applyChatTemplate(messages, { addGenerationPrompt: true, variables: o.chatTemplateVariables });
    return tok.encode(text, { addSpecialTokens: false });
  });
  const rows = await run(model, tok, ids, o);
  return rows.map((r, i) => ({
    prompt: prompts[i],
    completion: r.text,
    tokens: r.tokens,
    finishReason: r.finish,
    promptTokens: r.prompt.length,
  }));
}

/**
 * Generates from token ids (models without a tokenizer, benchmarks). Stop strings and onToken need
 * `tokenizer`; without one, onToken receives nothing.
 */
export async function generateIds(
  model: LanguageModel,
  prompts: number[][],
  o: GenerateOptions & { tokenizer?: Tokenizer } = {},
): Promise<TokenGenerationResult[]> {
  const rows = await run(model, o.tokenizer ?? null, prompts, o);
  return rows.map((r) => ({ tokens: r.tokens, finishReason: r.finish, promptTokens: r.prompt.length }));
}

function checkOptions(o: GenerateOptions, tok: Tokenizer | null): void {
  checkSamplingOptions(o);
  const m = o.maxNewTokens ?? 128;
  if (!Number.isInteger(m) || m < 1) throw new RangeError(`Expected an integer >= 1 for maxNewTokens but received ${o.maxNewTokens}`);
  const b = o.batchSize ?? 8;
  if (!Number.isInteger(b) || b < 1) throw new RangeError(`Expected an integer >= 1 for batchSize but received ${o.batchSize}`);
  if (o.seed !== undefined && !Number.isFinite(o.seed)) throw new RangeError(`Expected a finite number for seed but received ${o.seed}`);
  if (o.stop?.some((s) => typeof s !== "string" || s === "")) throw new RangeError("stop strings must be non-empty strings");
  if (o.stop?.length && !tok) throw new TypeError("stop strings need a tokenizer");
}

async function run(model: LanguageModel, tok: Tokenizer | null, prompts: number[][], o: GenerateOptions): Promise<Row[]> {
  checkOptions(o, tok);
  o.signal?.throwIfAborted();
  const info = model.info;
  const sampling = (o.temperature ?? 0) > 0;
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  const rows: Row[] = prompts.map((p, index) => {
    let prompt = p;
    if (prompt.length === 0) {
      // Nothing to condition on: start from BOS when the model has one, as transformers does.
      const bos = info.bosTokenId ?? tok?.bosTokenId ?? null;
      if (bos === null) throw new InputError(`prompt ${index} encodes to no tokens and the model has no BOS token to start from`);
      prompt = [bos];
    }
    for (const id of prompt) {
      if (!Number.isInteger(id) || id < 0 || id >= info.vocabSize) {
        throw new RangeError(`prompt ${index}: token id ${id} is outside the vocabulary [0, ${info.vocabSize})`);
      }
    }
    if (prompt.length >= info.maxPositions) {
      throw new RangeError(`prompt ${index} has ${prompt.length} tokens: no room to generate within the model's ${info.maxPositions} positions`);
    }
    return {
      index,
      prompt,
      tokens: [],
      done: false,
      finish: "length" as FinishReason,
      rng: sampling ? new Rng(seed, index) : null,
      text: "",
      emitted: 0,
    };
  });
  const eos = new Set<number>(o.ignoreEos ? [] : [...info.eosTokenIds, ...(tok?.eosTokenIds ?? []), ...(o.eosTokenIds ?? [])]);
  const batchSize = o.batchSize ?? 8;
  let finished = 0;
  for (let s = 0; s < rows.length; s += batchSize) {
    const batch = rows.slice(s, s + batchSize);
    await runBatch(model, tok, batch, eos, o);
    finished += batch.length;
    o.onProgress?.({ stage: "generate", done: finished, total: rows.length, unit: "prompts", message: "" });
  }
  return rows;
}

/** Left-padded int64 ids and mask for a batch. */
export function leftPad(seqs: number[][], pad: number): { ids: BigInt64Array; mask: BigInt64Array; T: number } {
  const T = Math.max(...seqs.map((s) => s.length));
  const ids = new BigInt64Array(seqs.length * T).fill(BigInt(pad));
  const mask = new BigInt64Array(seqs.length * T);
  seqs.forEach((s, b) => {
    const off = b * T + (T - s.length);
    for (let j = 0; j < s.length; j++) {
      ids[off + j] = BigInt(s[j]);
      mask[off + j] = 1n;
    }
  });
  return { ids, mask, T };
}

/** The logits of a [B, 1, V] tensor as fp32 values; disposes the tensor. */
function lastLogits(t: Tensor, B: number): { data: Float32Array; V: number } {
  try {
    const shape = t.shape;
    const V = shape[shape.length - 1];
    const data = (t.dtype === "fp32" ? t.toTypedArray() : withConverted(t)) as Float32Array;
    if (data.length === B * V) return { data, V };
    // A full [B, T, V] result (a model ignoring lastOnly): keep the last position of each row.
    const T = data.length / (B * V);
    const out = new Float32Array(B * V);
    for (let b = 0; b < B; b++) out.set(data.subarray((b * T + T - 1) * V, (b * T + T) * V), b * V);
    return { data: out, V };
  } finally {
    t.dispose();
  }
}

function withConverted(t: Tensor): Float32Array {
  const f = t.to("fp32");
  try {
    return f.toTypedArray() as Float32Array;
  } finally {
    f.dispose();
  }
}

async function runBatch(model: LanguageModel, tok: Tokenizer | null, batch: Row[], eos: Set<number>, o: GenerateOptions): Promise<void> {
  const info = model.info;
  const B = batch.length;
  const maxNew = o.maxNewTokens ?? 128;
  const pad = info.padTokenId ?? tok?.padTokenId ?? [...eos][0] ?? 0;
  const { ids, mask, T } = leftPad(
    batch.map((r) => r.prompt),
    pad,
  );
  const cache = model.createCache();
  let maskArr = mask;
  let width = T;
  try {
    let input = Tensor.from(ids, [B, T]);
    for (;;) {
      o.signal?.throwIfAborted();
      const am = Tensor.from(maskArr, [B, width]);
      let res: { logits: Tensor };
      try {
        res = await model.forward(input, { attentionMask: am, cache, lastOnly: true });
      } finally {
        input.dispose();
        am.dispose();
      }
      const { data, V } = lastLogits(res.logits, B);
      const next = new BigInt64Array(B).fill(BigInt(pad));
      for (let b = 0; b < B; b++) {
        const r = batch[b];
        if (r.done) continue;
        const t = sampleToken(data, o, r.rng, b * V, V);
        next[b] = BigInt(t);
        r.tokens.push(t);
        step(r, t, tok, eos, o, maxNew, info.maxPositions);
      }
      if (batch.every((r) => r.done)) break;
      // Finished rows are fed padding with mask 0 until the batch ends: their outputs are ignored, and
      // their positions (from the mask) stop growing, so a row that ended at the model's last position
      // never asks for one beyond it.
      const grown = new BigInt64Array(B * (width + 1));
      for (let b = 0; b < B; b++) {
        grown.set(maskArr.subarray(b * width, (b + 1) * width), b * (width + 1));
        grown[b * (width + 1) + width] = batch[b].done ? 0n : 1n;
      }
      maskArr = grown;
      width += 1;
      input = Tensor.from(next, [B, 1]);
    }
  } finally {
    cache.dispose();
  }
}

/** Updates a row after it received token `t`: EOS, stop strings, length, streaming. */
function step(r: Row, t: number, tok: Tokenizer | null, eos: Set<number>, o: GenerateOptions, maxNew: number, maxPos: number): void {
  const isEos = eos.has(t);
  if (isEos) {
    r.done = true;
    r.finish = "eos";
  }
  const stops = o.stop ?? [];
  // Text is needed every step only for stop strings and streaming; otherwise once, at the end.
  if (tok && !isEos && (stops.length > 0 || o.onToken)) {
    const text = tok.decode(r.tokens);
    let cut = -1;
    for (const s of stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      r.text = text.slice(0, cut);
      r.done = true;
      r.finish = "stop";
    } else {
      r.text = text;
    }
  }
  if (!r.done && (r.tokens.length >= maxNew || r.prompt.length + r.tokens.length >= maxPos)) {
    r.done = true;
    r.finish = "length";
  }
  if (tok && r.done && stops.length === 0 && !o.onToken) r.text = tok.decode(isEos ? r.tokens.slice(0, -1) : r.tokens);
  if (tok && o.onToken) stream(r, stops, o.onToken);
}

/**
 * Emits the completion text not yet streamed, holding back an incomplete UTF-8 character (U+FFFD at
 * the end) and any tail that could be the start of a stop string, until the row is done.
 */
function stream(r: Row, stops: string[], onToken: (index: number, text: string) => void): void {
  const text = r.text;
  let safe = text.length;
  if (!r.done) {
    while (safe > 0 && text.charCodeAt(safe - 1) === 0xfffd) safe--;
    let hold = 0;
    for (const s of stops) {
      for (let k = Math.min(s.length - 1, safe); k > hold; k--) {
        if (text.endsWith(s.slice(0, k), safe)) {
          hold = k;
          break;
        }
      }
    }
    safe -= hold;
  }
  if (safe > r.emitted) {
    onToken(r.index, text.slice(r.emitted, safe));
    r.emitted = safe;
  }
}
