// Sparse autoencoders from TypeScript: load (qsae and SAELens folders), encode/decode, train (a grid in one
// pass over an activation store), evaluate. The work runs natively (libtorch) off the JS thread.
import { withCallSite } from "../errors.js";
import { native } from "../native/addon.js";
import { runJob, type JobOptions } from "../native/cancel.js";
import type { NativeSae, NativeSaeEval } from "../native/types.js";
import { nativeTensor, Tensor } from "../tensor.js";
import { DisposedError } from "../errors.js";

export type SaeArchitecture = "relu" | "topk" | "batchtopk" | "jumprelu";

export interface SaeInfo {
  architecture: SaeArchitecture;
  dIn: number;
  dSae: number;
  /** top-k types only (0 otherwise) */
  k: number;
  applyBDecToInput: boolean;
  dtype: string;
  /** cfg.json as it would be saved (SAELens-compatible), metadata included */
  cfg: Record<string, unknown>;
}

const handles = new WeakMap<Sae, NativeSae>();

/** A loaded SAE. Weights stay native; dispose() frees them now (idempotent), else the GC does. */
export class Sae {
  readonly info: SaeInfo;

  private constructor(h: NativeSae) {
    handles.set(this, h);
    const i = h.info();
    this.info = { ...i, architecture: i.architecture as SaeArchitecture, cfg: JSON.parse(i.cfg) };
  }

  /** Loads a folder with cfg.json + sae_weights.safetensors (qsae's own or SAELens's; "standard" = relu). */
  static async load(dir: string): Promise<Sae> {
    return new Sae(await withCallSite(native().loadSae(dir)));
  }

  private get h(): NativeSae {
    const h = handles.get(this);
    if (!h || h.disposed) throw new DisposedError("Sae");
    return h;
  }

  /** Dense latent activations [N, dSae] (fp32) for inputs [N, dIn] (any float dtype; leading dims flattened). */
  async encode(x: Tensor): Promise<Tensor> {
    return Tensor.fromNative(await withCallSite(this.h.encode(nativeTensor(x))));
  }

  /** Reconstruction [N, dIn] from latents [N, dSae]. */
  async decode(f: Tensor): Promise<Tensor> {
    return Tensor.fromNative(await withCallSite(this.h.decode(nativeTensor(f))));
  }

  /** The parameters: W_enc [dIn, dSae], b_enc, W_dec [dSae, dIn], b_dec, threshold (jumprelu/batchtopk). */
  tensors(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(this.h.tensors())) out[k] = Tensor.fromNative(v);
    return out;
  }

  /** Saves an SAELens-compatible folder atomically (temp folder + rename). */
  async save(dir: string): Promise<void> {
    await withCallSite(this.h.save(dir));
  }

  get disposed(): boolean {
    const h = handles.get(this);
    return !h || h.disposed;
  }

  dispose(): void {
    handles.get(this)?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal */
  static nativeOf(s: Sae): NativeSae {
    return s.h;
  }
}

export interface TrainSaeOptions extends JobOptions {
  /** Activation store folder, or a .safetensors file holding `acts` [N, D]. */
  acts: string;
  hook?: string;
  layer?: number;
  type?: SaeArchitecture;
  /** One value or a grid: d_sae = round(expansion * d_in). Default 0.5. */
  expansion?: number | number[];
  /** L1 coefficient(s) (relu; jumprelu's L0 weight). A list makes a grid with the expansions. Default 5e-4. */
  l1?: number | number[];
  k?: number;
  /** L1 weighted by decoder row norms instead of renormalizing decoder rows every step. */
  l1NormWeighted?: boolean;
  applyBDecToInput?: boolean;
  epochs?: number;
  tokens?: number;
  batchSize?: number;
  lr?: number;
  lrWarmup?: number;
  lrDecay?: number;
  l1Warmup?: number;
  seed?: number;
  normalize?: boolean;
  deadAfter?: number;
  auxCoef?: number;
  auxK?: number;
  resampleEvery?: number;
  bufferRows?: number;
  /** false: the plain autograd path (for comparisons) */
  fused?: boolean;
  device?: string;
  /** One SAE: its folder. A grid: one sub-folder per SAE (x0.5, x1, ... / -l1_...) and grid.json. */
  out: string;
  /** Continue from `${out}.checkpoint.safetensors` (written every checkpointEvery steps or 60 s, and on abort). */
  resume?: boolean;
  checkpointEvery?: number;
  /** Extra cfg.json metadata (model, precision, quantization, ...). */
  metadata?: Record<string, unknown>;
}

export interface TrainedSae {
  name: string;
  folder: string;
  dSae: number;
  l1: number;
  loss: number;
  mse: number;
  l0: number;
  deadFraction: number;
}

export interface TrainSaeResult {
  saes: TrainedSae[];
  steps: number;
  tokens: number;
  dIn: number;
  seconds: number;
  tokensPerSecond: number;
  /** the activation scale folded into the saved weights */
  scale: number;
  resumedFrom: number;
}

/** Progress of training, parsed from the native progress message. */
export interface TrainProgress {
  tokens: number;
  totalTokens: number;
  loss: number;
  l0: number;
  dead: number;
  tokensPerSecond: number;
}

export function parseTrainProgress(p: { done: number; total: number; message: string }): TrainProgress | undefined {
  try {
    const m = JSON.parse(p.message) as { loss: number; l0: number; dead: number; tokens_per_s: number };
    return { tokens: p.done, totalTokens: p.total, loss: m.loss, l0: m.l0, dead: m.dead, tokensPerSecond: m.tokens_per_s };
  } catch {
    return undefined;
  }
}

/** Trains one SAE or a grid in one pass over the activations (natively; abortable; progress). */
export async function trainSae(opts: TrainSaeOptions): Promise<TrainSaeResult> {
  const { signal, onProgress, type, metadata, ...rest } = opts;
  const args: Record<string, unknown> = { ...rest, architecture: type, metadata: metadata ? JSON.stringify(metadata) : undefined };
  for (const k of Object.keys(args)) if (args[k] === undefined) delete args[k];
  return runJob({ signal, onProgress }, (o) => native().trainSae({ ...args, ...o }));
}

/** Reconstruction metrics of evalSae (the native result as is). */
export type SaeEval = NativeSaeEval;

export interface EvalSaeOptions extends JobOptions {
  hook?: string;
  layer?: number;
  batchSize?: number;
}

/** Reconstruction metrics of an SAE (or its folder) over an activation store or .safetensors file. */
export async function evalSae(sae: Sae | string, acts: string, opts: EvalSaeOptions = {}): Promise<SaeEval> {
  const { signal, onProgress, ...rest } = opts;
  const target = typeof sae === "string" ? sae : Sae.nativeOf(sae);
  const args: Record<string, unknown> = { ...rest };
  for (const k of Object.keys(args)) if (args[k] === undefined) delete args[k];
  return runJob({ signal, onProgress }, (o) => native().evalSae(target, acts, { ...args, ...o }));
}
