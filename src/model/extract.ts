// Activation extraction: runs prompts through a model once, capturing every chosen hook at every chosen
// layer in the same forward, and writes the rows of real tokens (no padding, optionally no BOS) into an
// activation store. Rows depend only on the prompts, the tokenizer and the skip rules, never on the
// precision, so stores of the same prompts at two precisions are token-aligned row by row.
import type { JobOptions } from "../native/cancel.js";
import { Tensor } from "../tensor.js";
import { VERSION } from "../version.js";
import { actsName, ActivationStoreWriter } from "./activation-store.js";
import type { ActivationManifest, StoreDtype } from "./activation-store.js";
import type { LanguageModel } from "./generate.js";
import { HOOK_NAMES, type HookName } from "./model.js";
import { hashPrompts } from "./prompts.js";
import type { Tokenizer } from "./tokenizer.js";

export type { ActivationManifest } from "./activation-store.js";

/** A hook point of the model runtime: resid_pre, resid_post, attn_out or mlp_out. */
export type ExtractHook = HookName;

/** What extraction reads of a model besides forward(): `Model` satisfies it. */
export interface ExtractModel extends LanguageModel {
  readonly info: LanguageModel["info"] & {
    readonly path: string;
    readonly architecture: string;
    readonly numLayers: number;
    readonly hiddenSize: number;
    readonly precision: string;
    readonly computeDtype: string;
    readonly configHash: string;
    readonly weightsHash: string;
    readonly quantization?: {
      type?: "nf4" | "fp4" | "int8";
      blocksize?: number;
      doubleQuant?: boolean;
      int8Threshold?: number;
      prequantized?: boolean;
    } | null;
  };
}

export interface ExtractOptions extends JobOptions {
  /** The store folder to create (written as OUT.tmp-PID, then renamed). */
  out: string;
  layers: number[];
  /** Default ["resid_post"]. */
  hooks?: ExtractHook[];
  /** Stored dtype, default fp32. */
  dtype?: StoreDtype;
  /** Rows per shard. Default: about 256 MiB of fp32 activations per shard (1024..65536 rows). */
  shardRows?: number;
  /** Keep the first maxLength tokens of each prompt (default: the model's maximum positions). */
  maxLength?: number;
  /** Leave out a BOS token at position 0 (default true). */
  skipBos?: boolean;
  /** Encode prompts with the tokenizer's special tokens (default true). */
  addSpecialTokens?: boolean;
  /** Prompts per forward at most (default 16). */
  batchSize?: number;
  /** Padded tokens (batch × longest prompt) per forward at most (default 8192). */
  maxBatchTokens?: number;
  /** Replace an existing store at `out`. */
  overwrite?: boolean;
  /** Quantization settings recorded in the manifest (default: from the model's info, else null). */
  quantization?: ActivationManifest["quantization"];
}

/** Default rows per shard for a given width and number of activation tensors. */
export function defaultShardRows(d: number, nActs: number): number {
  const rows = Math.floor((256 * 2 ** 20) / (4 * d * nActs));
  return Math.max(1024, Math.min(65536, rows - (rows % 1024)));
}

/**
 * Tokenizes string prompts (or takes token-id prompts as they are, e.g. for models without a tokenizer),
 * runs them in left-padded batches, and writes an activation store. Returns its manifest.
 */
export async function extractActivations(
  model: ExtractModel,
  tok: Tokenizer | null,
  prompts: string[] | number[][],
  o: ExtractOptions,
): Promise<ActivationManifest> {
  const info = model.info;
  const hooks = o.hooks ?? ["resid_post"];
  checkOptions(o, hooks, info.numLayers);
  o.signal?.throwIfAborted();
  const addSpecial = o.addSpecialTokens ?? true;
  const maxLength = o.maxLength ?? info.maxPositions;
  const ids: number[][] = prompts.map((p, i) => {
    let t: number[];
    if (typeof p === "string") {
      if (!tok) throw new TypeError("string prompts need a tokenizer (pass token ids for models without one)");
      t = tok.encode(p, { addSpecialTokens: addSpecial });
    } else {
      t = p;
    }
    for (const id of t) {
      if (!Number.isInteger(id) || id < 0 || id >= info.vocabSize) {
        throw new RangeError(`prompt ${i}: token id ${id} is outside the vocabulary [0, ${info.vocabSize})`);
      }
    }
    return t.length > maxLength ? t.slice(0, maxLength) : t;
  });
  const skipBos = o.skipBos ?? true;
  const bos = info.bosTokenId ?? tok?.bosTokenId ?? null;
  const first = ids.map((t) => (skipBos && bos !== null && t.length > 0 && t[0] === bos ? 1 : 0));
  const total = ids.reduce((a, t, i) => a + t.length - first[i], 0);

  const names = hooks.flatMap((h) => o.layers.map((l) => actsName(h, l)));
  const d = info.hiddenSize;
  const writer = await ActivationStoreWriter.create(o.out, {
    names,
    d,
    dtype: o.dtype ?? "fp32",
    shardRows: o.shardRows ?? defaultShardRows(d, names.length),
    overwrite: o.overwrite,
  });
  try {
    let done = 0;
    const t0 = Date.now();
    const report = () =>
      o.onProgress?.({ stage: "extract", done, total, unit: "tokens", message: `${((done / Math.max(1e-3, (Date.now() - t0) / 1000)) | 0)} tokens/s` });
    report();
    for (const batch of batches(ids, o.batchSize ?? 16, o.maxBatchTokens ?? 8192)) {
      o.signal?.throwIfAborted();
      const seqs = batch.map((i) => ids[i]);
      const caps = await captureBatch(model, seqs, hooks, o.layers, info.padTokenId ?? tok?.padTokenId ?? 0);
      const T = Math.max(...seqs.map((s) => s.length));
      for (let b = 0; b < batch.length; b++) {
        const doc = batch[b];
        const s = seqs[b];
        const from = first[doc];
        const n = s.length - from;
        if (n <= 0) continue;
        // Real tokens of row b sit at padded positions T - len + j: one contiguous block of rows.
        const r0 = b * T + (T - s.length) + from;
        const acts: Record<string, Float32Array> = {};
        for (const name of names) acts[name] = caps[name].subarray(r0 * d, (r0 + n) * d);
        const pos = Int32Array.from({ length: n }, (_, j) => from + j);
        await writer.appendRows(acts, s.slice(from), new Int32Array(n).fill(doc), pos);
        done += n;
      }
      report();
    }
    const q = o.quantization !== undefined ? o.quantization : quantizationOf(info);
    return await writer.finish({
      qsae_version: VERSION,
      model: { path: info.path, architecture: info.architecture, config_hash: info.configHash, weights_hash: info.weightsHash },
      precision: info.precision,
      compute_dtype: info.computeDtype,
      quantization: q,
      hooks: [...hooks],
      layers: [...o.layers],
      n_prompts: prompts.length,
      prompts_hash: hashPrompts(prompts),
      skip_bos: skipBos,
      max_length: maxLength,
      add_special_tokens: addSpecial,
      created: new Date().toISOString(),
    });
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

function quantizationOf(info: ExtractModel["info"]): ActivationManifest["quantization"] {
  const q = info.quantization;
  if (!q) return null;
  return {
    ...(q.type ? { type: q.type } : {}),
    blocksize: q.blocksize ?? null,
    double_quant: q.doubleQuant ?? null,
    int8_threshold: q.int8Threshold ?? null,
    ...(q.prequantized !== undefined ? { prequantized: q.prequantized } : {}),
  };
}

function checkOptions(o: ExtractOptions, hooks: readonly string[], numLayers: number): void {
  if (typeof o.out !== "string" || o.out === "") throw new TypeError("out: expected the store folder's path");
  if (!Array.isArray(o.layers) || o.layers.length === 0) throw new RangeError("layers: name at least one layer");
  for (const l of o.layers) {
    if (!Number.isInteger(l) || l < 0 || l >= numLayers) {
      throw new RangeError(`layers: ${l} is not a layer of this model (0..${numLayers - 1})`);
    }
  }
  if (new Set(o.layers).size !== o.layers.length) throw new RangeError(`layers: ${o.layers.join(",")} lists a layer twice`);
  if (hooks.length === 0) throw new RangeError("hooks: name at least one hook");
  for (const h of hooks) {
    if (!(HOOK_NAMES as readonly string[]).includes(h)) throw new RangeError(`hooks: unknown hook '${h}' (expected ${HOOK_NAMES.join(", ")})`);
  }
  if (new Set(hooks).size !== hooks.length) throw new RangeError(`hooks: ${hooks.join(",")} lists a hook twice`);
  for (const [k, v, min] of [
    ["maxLength", o.maxLength, 1],
    ["batchSize", o.batchSize, 1],
    ["maxBatchTokens", o.maxBatchTokens, 1],
    ["shardRows", o.shardRows, 1],
  ] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < min)) throw new RangeError(`Expected an integer >= ${min} for ${k} but received ${v}`);
  }
}

/**
 * Groups prompt indices, in order, into batches of at most `batchSize` prompts and `maxTokens` padded
 * tokens (a prompt longer than that goes alone). Empty prompts are left out: they have no rows.
 */
export function batches(ids: number[][], batchSize: number, maxTokens: number): number[][] {
  const out: number[][] = [];
  let cur: number[] = [];
  let longest = 0;
  for (let i = 0; i < ids.length; i++) {
    const len = ids[i].length;
    if (len === 0) continue;
    const l = Math.max(longest, len);
    if (cur.length > 0 && (cur.length + 1 > batchSize || (cur.length + 1) * l > maxTokens)) {
      out.push(cur);
      cur = [];
      longest = 0;
    }
    cur.push(i);
    longest = Math.max(longest, len);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** One forward of a left-padded batch capturing hooks × layers; returns fp32 [B, T, D] data per name. */
async function captureBatch(model: ExtractModel, seqs: number[][], hooks: readonly string[], layers: number[], pad: number): Promise<Record<string, Float32Array>> {
  const B = seqs.length;
  const T = Math.max(...seqs.map((s) => s.length));
  const ids = new BigInt64Array(B * T).fill(BigInt(pad));
  const mask = new BigInt64Array(B * T);
  seqs.forEach((s, b) => {
    const off = b * T + (T - s.length);
    for (let j = 0; j < s.length; j++) {
      ids[off + j] = BigInt(s[j]);
      mask[off + j] = 1n;
    }
  });
  const input = Tensor.from(ids, [B, T]);
  const am = Tensor.from(mask, [B, T]);
  let res: { logits?: Tensor; captures?: Record<string, Tensor> };
  try {
    res = await model.forward(input, { attentionMask: am, capture: { hooks: [...hooks], layers }, lastOnly: true, logits: false });
  } finally {
    input.dispose();
    am.dispose();
  }
  res.logits?.dispose();
  const data: Record<string, Float32Array> = {};
  const caps = res.captures ?? {};
  try {
    const d = model.info.hiddenSize;
    for (const h of hooks) {
      for (const l of layers) {
        const key = `${h}.${l}`;
        const t = caps[key];
        if (!t) throw new Error(`the model returned no capture ${key}`);
        if (t.shape.join(",") !== [B, T, d].join(",")) {
          throw new Error(`capture ${key} is [${t.shape.join(", ")}], expected [${B}, ${T}, ${d}]`);
        }
        data[actsName(h, l)] = (t.dtype === "fp32" ? t.toTypedArray() : convert(t)) as Float32Array;
      }
    }
  } finally {
    for (const t of Object.values(caps)) t.dispose();
  }
  return data;
}

function convert(t: Tensor): Float32Array {
  const f = t.to("fp32");
  try {
    return f.toTypedArray() as Float32Array;
  } finally {
    f.dispose();
  }
}
