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
  /**
   * SAELens's run-time input normalization, applied per token by encode/decode/evalSae/splicing: "layer_norm"
   * (x - mean) / (std + 1e-5), "constant_norm_rescale" x * sqrt(dIn) / ||x||, or "none" (qsae's own SAEs fold
   * their training scale into the weights).
   */
  normalizeActivations: "none" | "layer_norm" | "constant_norm_rescale";
  dtype: string;
  /**
   * cfg.json as it would be saved (SAELens-compatible: architecture "standard" for relu, "jumprelu" for a
   * batchtopk SAE with its threshold; qsae's own type in metadata.qsae_architecture), metadata included
   */
  cfg: Record<string, unknown>;
}

const handles = new WeakMap<Sae, NativeSae>();

/** A loaded SAE. Weights stay native; dispose() frees them now (idempotent), else the GC does. */
export class Sae {
  readonly info: SaeInfo;

  private constructor(h: NativeSae) {
    handles.set(this, h);
    const i = h.info();
    this.info = {
      ...i,
      architecture: i.architecture as SaeArchitecture,
      normalizeActivations: i.normalizeActivations as SaeInfo["normalizeActivations"],
      cfg: JSON.parse(i.cfg),
    };
  }

  /**
   * Loads a folder with cfg.json + sae_weights.safetensors (qsae's own or SAELens's; "standard" = relu). NaN/Inf
   * weights and unknown normalize_activations values are refused; SAELens's expected_average_only_in folds the
   * factor of an activation_scaler.json beside the weights (a training checkpoint), else it is the identity.
   */
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

  /**
   * Reconstruction [N, dIn] from latents [N, dSae]. `x`, the input the latents were encoded from, is needed when
   * the SAE normalizes per token (info.normalizeActivations not "none"): its statistics scale the output back.
   */
  async decode(f: Tensor, x?: Tensor): Promise<Tensor> {
    return Tensor.fromNative(await withCallSite(this.h.decode(nativeTensor(f), x ? nativeTensor(x) : undefined)));
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
  /**
   * L1 coefficient(s) (relu; jumprelu's L0 weight). A list makes a grid with the expansions. Default 5e-4.
   * topk/batchtopk have no L1 term: a list of several values is refused.
   */
  l1?: number | number[];
  /** Active latents per token, topk/batchtopk only (default 32); refused for relu/jumprelu. */
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
  /**
   * One SAE: its folder. A grid: one sub-folder per SAE (x0.5, x1, ... / -l1_...) and grid.json. Checked before
   * any data is read: it may not be, lie inside or contain `acts`, and may only replace nothing, an empty folder
   * or a previous qsae SAE/grid output (replaced whole).
   */
  out: string;
  /** Continue from `${out}.checkpoint.safetensors` (written every checkpointEvery steps or 60 s, and on abort). */
  resume?: boolean;
  checkpointEvery?: number;
  /**
   * Extra cfg.json metadata (model, precision, quantization, hook_name, layer, ...). Those five are always written:
   * from here, the store's manifest or hook/layer, else null.
   */
  metadata?: Record<string, unknown>;
}

export interface TrainedSae {
  name: string;
  folder: string;
  dSae: number;
  l1: number;
  /** mse + sparsity terms over the last steps, in the training scale (activations x `scale`) */
  loss: number;
  /** mean squared error per element over the last steps, in the activations' own scale (as evalSae's mse) */
  mse: number;
  l0: number;
  deadFraction: number;
}

export interface TrainSaeResult {
  saes: TrainedSae[];
  /** steps trained over the whole run, resumed sessions included */
  steps: number;
  /** tokens trained over the whole run (exactly `tokens`, or epochs x rows, once finished) */
  tokens: number;
  /** tokens trained by this call (tokens minus those before resumedFrom) */
  sessionTokens: number;
  dIn: number;
  /** this call's wall time */
  seconds: number;
  /** sessionTokens / seconds */
  tokensPerSecond: number;
  /** the activation scale folded into the saved weights */
  scale: number;
  /** the step a resumed run continued from (0: a fresh run) */
  resumedFrom: number;
  /** stopped early with its checkpoint kept (testing) */
  stopped: boolean;
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
