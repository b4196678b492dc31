// The model runtime's TypeScript face: Model.load (streaming load at a precision, with progress and
// cancellation), forward (batched, left padding, KV cache, activation capture, hidden states), KV caches,
// per-module precision report, and planModel (the same report without loading weights).
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";

import { DisposedError, InputError } from "../errors.js";
import { native } from "../native/addon.js";
import { type JobOptions, runJob } from "../native/cancel.js";
import type { NativeKvCache, NativeLoadModelOptions, NativeModel, NativeModelPlan } from "../native/types.js";
import { nativeTensor, Tensor } from "../tensor.js";

export type Precision = "fp32" | "bf16" | "fp16" | "int8" | "nf4" | "fp4";
export type ComputeDtype = "fp32" | "bf16" | "fp16";
export type HookName = "resid_pre" | "resid_post" | "attn_out" | "mlp_out";
export const PRECISIONS: readonly Precision[] = ["fp32", "bf16", "fp16", "int8", "nf4", "fp4"];
export const HOOK_NAMES: readonly HookName[] = ["resid_pre", "resid_post", "attn_out", "mlp_out"];

export interface LoadModelOptions extends JobOptions {
  /** Default: the checkpoint's dtype (bf16 checkpoints -> bf16); pre-quantized checkpoints: their format. */
  precision?: Precision;
  /** int8/nf4/fp4: default bf16 on CUDA, fp32 on CPU. */
  computeDtype?: ComputeDtype;
  /** "cpu" (default) | "cuda" | "cuda:N" */
  device?: string;
  /**
   * A device map for a model larger than one GPU, e.g. ["cuda:0", "cuda:1"]: the blocks are split into
   * contiguous ranges, one per device (embeddings with the first, the head with the last); overrides device.
   */
  devices?: string[];
  blocksize?: number;
  doubleQuant?: boolean;
  int8Threshold?: number;
}

export interface ModelInfo {
  path: string;
  architecture: string;
  modelType: string;
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
  maxPositions: number;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  precision: Precision;
  computeDtype: ComputeDtype;
  device: string;
  /** Every device the model occupies, in layer order (one entry unless a device map was given). */
  devices: string[];
  /** The device of each block. */
  layerDevices: string[];
  /** sha256 hex of config.json's bytes. */
  configHash: string;
  /** sha256 hex of the weight files' headers and sizes. */
  weightsHash: string;
  /** The quantization in effect (null for fp32/bf16/fp16): from the load options, or read from a
   * pre-quantized bitsandbytes checkpoint. Recorded in activation stores and SAE metadata. */
  quantization: QuantSettings | null;
}

export interface QuantSettings {
  type: "nf4" | "fp4" | "int8";
  /** 4-bit only. */
  blocksize?: number;
  /** 4-bit only. */
  doubleQuant?: boolean;
  /** int8 only: LLM.int8 outlier threshold. */
  int8Threshold?: number;
  prequantized: boolean;
}

export interface ForwardOptions {
  /** int64 [B, T_total] (1 = token, 0 = padding; left padding). With a cache: covers past + new. */
  attentionMask?: Tensor;
  /** Appended to in place. */
  cache?: KvCache;
  capture?: { hooks: HookName[]; layers: number[] };
  /** Return hidden.{i}: the residual after block i (before the final norm), fp32 [B,T,D]. */
  hidden?: boolean;
  /** Logits only for the last position: [B,1,V]. */
  lastOnly?: boolean;
  /** false: skip the blocks after the last captured layer and the logits (activation extraction). */
  logits?: boolean;
}

export interface ForwardResult {
  logits: Tensor;
  hidden?: Tensor[];
  /** `${hook}.${layer}` -> fp32 [B,T,D] */
  captures?: Record<string, Tensor>;
}

export interface ModuleReport {
  name: string;
  precision: string;
  bytes: number;
}

export interface ModelPlan {
  path: string;
  architecture: string;
  modelType: string;
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
  precision: Precision;
  computeDtype: ComputeDtype;
  modules: ModuleReport[];
  /** Bytes of the weights at this precision. */
  totalBytes: number;
  /** Bytes of the tensors in the checkpoint files. */
  checkpointBytes: number;
  largestTensorBytes: number;
  /** The checkpoint holds bitsandbytes-quantized weights (quantization_config). */
  prequantized: boolean;
}

const cacheHandles = new WeakMap<KvCache, NativeKvCache>();

/** A KV cache for one model: forward() appends to it; `length` = tokens cached. */
export class KvCache {
  private constructor(h: NativeKvCache) {
    cacheHandles.set(this, h);
  }
  /** @internal */
  static fromNative(h: NativeKvCache): KvCache {
    return new KvCache(h);
  }
  get length(): number {
    return this.handle().length;
  }
  get bytes(): number {
    return this.handle().bytes;
  }
  get disposed(): boolean {
    return cacheHandles.get(this)?.disposed ?? true;
  }
  /** @internal */
  handle(): NativeKvCache {
    const h = cacheHandles.get(this);
    if (!h || h.disposed) throw new DisposedError("KvCache");
    return h;
  }
  dispose(): void {
    cacheHandles.get(this)?.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function nativeOptions(opts: LoadModelOptions | undefined): NativeLoadModelOptions {
  const o: NativeLoadModelOptions = {};
  if (opts?.precision !== undefined) {
    if (!PRECISIONS.includes(opts.precision)) {
      throw new TypeError(`precision: unknown precision '${opts.precision}' (expected ${PRECISIONS.join(", ")})`);
    }
    o.precision = opts.precision;
  }
  if (opts?.computeDtype !== undefined) o.computeDtype = opts.computeDtype;
  if (opts?.device !== undefined) o.device = opts.device;
  if (opts?.devices !== undefined) o.devices = [...opts.devices];
  if (opts?.blocksize !== undefined) o.blocksize = opts.blocksize;
  if (opts?.doubleQuant !== undefined) o.doubleQuant = opts.doubleQuant;
  if (opts?.int8Threshold !== undefined) o.int8Threshold = opts.int8Threshold;
  return o;
}

function checkModelDir(path: string): string {
  const dir = resolve(path);
  if (!existsSync(dir)) throw new InputError(`${path}: no such model folder`);
  if (!existsSync(join(dir, "config.json"))) throw new InputError(`${join(path, "config.json")}: missing (a model folder needs config.json)`);
  return dir;
}

/** The weight files of a model folder, in a stable order. */
async function weightFiles(dir: string): Promise<string[]> {
  const index = join(dir, "model.safetensors.index.json");
  if (existsSync(index)) {
    const j = JSON.parse(await readFile(index, "utf8")) as { weight_map?: Record<string, string> };
    return [...new Set(Object.values(j.weight_map ?? {}))].sort().map((f) => join(dir, f));
  }
  return [join(dir, "model.safetensors")];
}

/** sha256 of config.json's bytes, and of each weight file's name, size and safetensors header. */
export async function modelHashes(path: string): Promise<{ configHash: string; weightsHash: string }> {
  const dir = resolve(path);
  const configHash = createHash("sha256").update(await readFile(join(dir, "config.json"))).digest("hex");
  const h = createHash("sha256");
  for (const f of await weightFiles(dir)) {
    const fh = await open(f, "r");
    try {
      const size = (await fh.stat()).size;
      const len = Buffer.alloc(8);
      await fh.read(len, 0, 8, 0);
      const n = Number(len.readBigUInt64LE(0));
      const header = Buffer.alloc(Math.min(n, Math.max(0, size - 8)));
      await fh.read(header, 0, header.length, 8);
      h.update(`${f.split("/").pop()}\0${size}\0`);
      h.update(len);
      h.update(header);
    } finally {
      await fh.close();
    }
  }
  return { configHash, weightsHash: h.digest("hex") };
}

/** Per-module precision and bytes and the expected total memory, without loading weights. */
export async function planModel(path: string, opts?: LoadModelOptions): Promise<ModelPlan> {
  const dir = checkModelDir(path);
  const p: NativeModelPlan = await runJob(undefined, () => native().planModel(dir, nativeOptions(opts)));
  return {
    path: dir,
    architecture: p.architecture,
    modelType: p.modelType,
    numLayers: p.numLayers,
    hiddenSize: p.hiddenSize,
    vocabSize: p.vocabSize,
    precision: p.precision as Precision,
    computeDtype: p.computeDtype as ComputeDtype,
    modules: p.modules,
    totalBytes: p.totalBytes,
    checkpointBytes: p.checkpointBytes,
    largestTensorBytes: p.largestTensorBytes,
    prequantized: p.prequantized,
  };
}

const modelHandles = new WeakMap<Model, NativeModel>();

/** The native handle behind a Model (internal: for other qsae modules; throws once disposed). */
export function nativeModelOf(m: Model): NativeModel {
  const h = modelHandles.get(m);
  if (!h || h.disposed) throw new DisposedError("Model");
  return h;
}

export class Model {
  readonly info: ModelInfo;

  private constructor(h: NativeModel, info: ModelInfo) {
    modelHandles.set(this, h);
    this.info = info;
  }

  /** Loads a Hugging Face model folder (config.json + model.safetensors or shards). */
  static async load(path: string, opts?: LoadModelOptions): Promise<Model> {
    const dir = checkModelDir(path);
    const no = nativeOptions(opts);
    const h = await runJob(opts, (j) => native().loadModel(dir, { ...no, ...j }));
    let hashes: { configHash: string; weightsHash: string };
    try {
      hashes = await modelHashes(dir);
    } catch (e) {
      h.dispose();
      throw e;
    }
    const n = h.info();
    const info: ModelInfo = {
      path: dir,
      architecture: n.architecture,
      modelType: n.modelType,
      numLayers: n.numLayers,
      hiddenSize: n.hiddenSize,
      vocabSize: n.vocabSize,
      maxPositions: n.maxPositions,
      bosTokenId: n.bosTokenId,
      eosTokenIds: n.eosTokenIds,
      padTokenId: n.padTokenId,
      precision: n.precision as Precision,
      computeDtype: n.computeDtype as ComputeDtype,
      device: n.device,
      devices: [...n.devices],
      layerDevices: [...n.layerDevices],
      quantization: n.quantization ? { ...n.quantization } : null,
      ...hashes,
    };
    return new Model(h, Object.freeze(info));
  }

  private get h(): NativeModel {
    const h = modelHandles.get(this);
    if (!h || h.disposed) throw new DisposedError("Model");
    return h;
  }

  get disposed(): boolean {
    return modelHandles.get(this)?.disposed ?? true;
  }

  /** Bytes the weights hold. */
  get bytes(): number {
    return this.h.bytes;
  }

  async forward(inputIds: Tensor, opts?: ForwardOptions): Promise<ForwardResult> {
    const h = this.h;
    const site = new Error();
    try {
      const r = await h.forward(nativeTensor(inputIds), {
        attentionMask: opts?.attentionMask ? nativeTensor(opts.attentionMask) : undefined,
        cache: opts?.cache ? opts.cache.handle() : undefined,
        hooks: opts?.capture?.hooks,
        layers: opts?.capture?.layers,
        hidden: opts?.hidden ?? false,
        lastOnly: opts?.lastOnly ?? false,
        logits: opts?.logits ?? true,
      });
      const out: ForwardResult = { logits: r.logits ? Tensor.fromNative(r.logits) : (undefined as unknown as Tensor) };
      if (r.hidden) out.hidden = r.hidden.map((t) => Tensor.fromNative(t));
      if (r.captures) {
        out.captures = {};
        for (const [k, v] of Object.entries(r.captures)) out.captures[k] = Tensor.fromNative(v);
      }
      return out;
    } catch (e) {
      if (e instanceof Error && site.stack) e.stack = `${e.name}: ${e.message}\n${site.stack.split("\n").slice(2).join("\n")}`;
      throw e;
    }
  }

  /** An empty KV cache; forward() appends to it. */
  createCache(): KvCache {
    return KvCache.fromNative(this.h.createCache());
  }

  /** What each module holds: name, precision ("fp32", "bf16", "nf4", "int8", ...) and bytes. */
  modules(): { name: string; precision: string; bytes: number }[] {
    return this.h.modules();
  }

  /** Frees the weights now (idempotent); a forward in flight finishes first. */
  dispose(): void {
    modelHandles.get(this)?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
