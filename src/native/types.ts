// The native addon's surface, hand-typed in one place. Each module adds its own interface below
// and extends NativeAddon; nothing outside src/ touches these handles directly.

export type DTypeName = "fp64" | "fp32" | "fp16" | "bf16" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";

export interface NativeProgress {
  stage: string;
  done: number;
  total: number;
  unit: string;
  message: string;
}

/** Options accepted by every long-running native call. */
export interface NativeJobOptions {
  cancel?: NativeCancelToken;
  onProgress?: (p: NativeProgress) => void;
}

export interface NativeCancelToken {
  cancel(): void;
}

export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: DTypeName;
  readonly device: string;
  readonly nbytes: number;
  readonly disposed: boolean;
  toBuffer(): ArrayBuffer;
  to(dtype?: DTypeName, device?: string): NativeTensor;
  dispose(): void;
}

export interface NativeCudaDevice {
  index: number;
  name: string;
  totalMemory: number;
  computeCapability: string;
}

export interface NativeInfo {
  qsaeVersion: string;
  torchVersion: string;
  blas: string;
  blasLibrary: string;
  threads: number;
  cpuFeatures: string;
  cudaBuilt: boolean;
  cudaAvailable: boolean;
  cudaDevices: NativeCudaDevice[];
}

export interface NativeTensorEntry {
  name: string;
  /** safetensors dtype name: F32, BF16, U8, ... */
  dtype: string;
  shape: number[];
  bytes: number;
  file: string;
}

export interface NativeInspect {
  path: string;
  shards: string[];
  tensors: NativeTensorEntry[];
  metadata: Record<string, string>;
}

export interface CommonNative {
  TensorHandle: new () => NativeTensor;
  CancelToken: new () => NativeCancelToken;
  tensorFromBuffer(data: ArrayBuffer, dtype: DTypeName, shape: number[]): NativeTensor;
  info(): NativeInfo;
  setThreads(n: number): number;
  manualSeed(seed: number): void;
}

export interface IoNative {
  inspectCheckpoint(path: string): Promise<NativeInspect>;
  loadSafetensors(
    path: string,
    names?: string[],
  ): Promise<{ tensors: Record<string, NativeTensor>; metadata: Record<string, string> }>;
  saveSafetensors(path: string, tensors: Record<string, NativeTensor>, metadata?: Record<string, string>): Promise<void>;
}

// ---- model runtime (native/addon/model_binding.cpp) ----
export interface NativeModelConfigInfo {
  architecture: string;
  modelType: string;
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
  maxPositions: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  bosTokenId: number | null;
  padTokenId: number | null;
  eosTokenIds: number[];
}

export interface NativeModuleInfo {
  name: string;
  precision: string;
  bytes: number;
}

/** The quantization in effect (from the load options, or read from a pre-quantized checkpoint). */
export interface NativeQuantSettings {
  type: "nf4" | "fp4" | "int8";
  blocksize?: number;
  doubleQuant?: boolean;
  int8Threshold?: number;
  prequantized: boolean;
}

export interface NativeModelInfo extends NativeModelConfigInfo {
  precision: string;
  computeDtype: string;
  device: string;
  bytes: number;
  slidingWindow: number[];
  /** null for dense precisions (fp32/bf16/fp16). */
  quantization: NativeQuantSettings | null;
  devices: string[];
  layerDevices: string[];
}

export interface NativeModelPlan extends NativeModelConfigInfo {
  precision: string;
  computeDtype: string;
  modules: NativeModuleInfo[];
  totalBytes: number;
  checkpointBytes: number;
  largestTensorBytes: number;
  prequantized: boolean;
}

export interface NativeKvCache {
  readonly length: number;
  readonly bytes: number;
  readonly disposed: boolean;
  dispose(): void;
}

export interface NativeForwardOptions {
  attentionMask?: NativeTensor;
  cache?: NativeKvCache;
  hooks?: string[];
  layers?: number[];
  hidden?: boolean;
  lastOnly?: boolean;
  logits?: boolean;
  cancel?: NativeCancelToken;
}

export interface NativeModel {
  info(): NativeModelInfo;
  modules(): NativeModuleInfo[];
  forward(
    inputIds: NativeTensor,
    opts?: NativeForwardOptions,
  ): Promise<{ logits?: NativeTensor; hidden?: NativeTensor[]; captures?: Record<string, NativeTensor> }>;
  createCache(): NativeKvCache;
  readonly bytes: number;
  readonly disposed: boolean;
  dispose(): void;
}

export interface NativeLoadModelOptions extends NativeJobOptions {
  precision?: string;
  computeDtype?: string;
  device?: string;
  devices?: string[];
  blocksize?: number;
  doubleQuant?: boolean;
  int8Threshold?: number;
}

export interface NativeSpliceSums {
  nllOrig: number;
  nllSae: number;
  nllZero: number;
  klSae: number;
  klZero: number;
  tokens: number;
}

export interface ModelNative {
  loadModel(path: string, opts?: NativeLoadModelOptions): Promise<NativeModel>;
  spliceEval(
    model: NativeModel,
    sae: NativeSae,
    inputIds: NativeTensor,
    attentionMask: NativeTensor | null,
    opts: { hook?: string; layer: number },
  ): Promise<NativeSpliceSums>;
  /** Several SAEs of one site: the clean and zero-ablated forwards run once per batch. */
  spliceEval(
    model: NativeModel,
    saes: NativeSae[],
    inputIds: NativeTensor,
    attentionMask: NativeTensor | null,
    opts: { hook?: string; layer: number },
  ): Promise<NativeSpliceSums[]>;
  planModel(path: string, opts?: NativeLoadModelOptions): Promise<NativeModelPlan>;
}

// ---- analysis (native/addon/analysis_binding.cpp) ----
export interface NativeTransferDetails {
  unit: string;
  units: number;
  groups: number;
  resamples: number;
  k: number;
  dIn: number;
}

export interface NativeTransferOptions extends NativeJobOptions {
  hook?: string;
  layer?: number;
  k?: number;
  nBoot?: number;
  seed?: number;
  chunkRows?: number;
  maxGroups?: number;
  device?: string;
}

export interface NativeLapResult {
  colOfRow: Int32Array;
  value: number;
  upperBound: number;
  gapBound: number;
  exact: boolean;
  iterations: number;
}

export interface AnalysisNative {
  analysisTransfer(
    sae: string,
    actsA: string,
    actsB: string,
    opts?: NativeTransferOptions,
  ): Promise<Record<string, unknown> & { details: NativeTransferDetails }>;
  analysisAlign(
    saeA: string,
    saeB: string,
    opts?: NativeJobOptions & { method?: string; exactMax?: number; epsFinal?: number },
  ): Promise<Record<string, unknown>>;
  linearAssignment(
    weights: NativeTensor,
    opts?: NativeJobOptions & { method?: string; epsFinal?: number },
  ): Promise<NativeLapResult>;
}

// ---- quant (native/addon/quant_binding.cpp) ----
export type QuantFormatName = "nf4" | "fp4" | "int8";

/** A 4-bit (NF4/FP4) tensor in bitsandbytes' layout. */
export interface Native4bit {
  format: "nf4" | "fp4";
  blocksize: number;
  shape: number[];
  /** original dtype */
  dtype: DTypeName;
  doubleQuant: boolean;
  /** uint8 [ceil(numel/2)], first element in the high nibble */
  packed: NativeTensor;
  /** fp32 [nblocks] (with double quant: the dequantized statistics) */
  absmax: NativeTensor;
  offset?: number;
  quantAbsmax?: NativeTensor;
  nestedAbsmax?: NativeTensor;
  nestedQuantMap?: NativeTensor;
  nestedBlocksize?: number;
}

/** An LLM.int8 weight: CB int8 [out, in], SCB fp32 [out]. */
export interface NativeInt8 {
  format: "int8";
  CB: NativeTensor;
  SCB: NativeTensor;
}

export interface NativeQuantizeReport {
  out: string;
  modelFolder: boolean;
  quantized: string[];
  kept: string[];
  bytesIn: number;
  bytesOut: number;
}

export interface QuantNative {
  quantize4(t: NativeTensor, o: { format: "nf4" | "fp4"; blocksize?: number; doubleQuant?: boolean }): Promise<Native4bit>;
  dequantize4(q: Native4bit, dtype?: DTypeName): Promise<NativeTensor>;
  quantizeInt8(t: NativeTensor): Promise<NativeInt8>;
  dequantizeInt8(q: NativeInt8, dtype?: DTypeName): Promise<NativeTensor>;
  linear4bit(x: NativeTensor, q: Native4bit, bias: NativeTensor | null, compute?: DTypeName): Promise<NativeTensor>;
  linearInt8(
    x: NativeTensor,
    q: NativeInt8,
    bias: NativeTensor | null,
    threshold: number,
    compute?: DTypeName,
  ): Promise<NativeTensor>;
  quantizeCheckpoint(
    input: string,
    output: string,
    o: { format: QuantFormatName; blocksize?: number; doubleQuant?: boolean; threshold?: number } & NativeJobOptions,
  ): Promise<NativeQuantizeReport>;
  /** The CPU kernel in use ("avx2" | "generic"); passing "auto" or "generic" selects first. */
  quantCpuKernel(which?: "auto" | "generic"): string;
}

export interface LmTrainOptions extends NativeJobOptions {
  seqLen?: number;
  batchSize?: number;
  steps?: number;
  warmupSteps?: number;
  lr?: number;
  minLrRatio?: number;
  weightDecay?: number;
  gradClip?: number;
  seed?: number;
  evalEvery?: number;
  evalWindows?: number;
  maxSeconds?: number;
  saveDtype?: DTypeName;
  /** where to train: "cpu" (default) or "cuda", "cuda:1", ... */
  device?: string;
}

export interface LmTrainResult {
  steps: number;
  /** the schedule's length: the requested steps, or fewer to fit the time limit */
  scheduledSteps: number;
  tokens: number;
  seconds: number;
  finalTrainLoss: number;
  /** nats per token on the held-out windows */
  heldoutLoss: number;
  heldoutCurve: [number, number][];
}

export interface TrainNative {
  lmInitWeights(dir: string, seed: number): Promise<void>;
  lmTrain(dir: string, trainTokens: NativeTensor, heldoutTokens: NativeTensor, opts: LmTrainOptions): Promise<LmTrainResult>;
  lmEvalLoss(dir: string, tokens: NativeTensor, opts: { seqLen?: number; windows?: number; precision?: string }): Promise<number>;
}

// ---- sae (native/addon/sae_binding.cpp) ----
export interface NativeSaeInfo {
  architecture: string;
  dIn: number;
  dSae: number;
  k: number;
  applyBDecToInput: boolean;
  /** run-time input normalization: "none" | "layer_norm" | "constant_norm_rescale" */
  normalizeActivations: string;
  dtype: string;
  /** cfg.json text */
  cfg: string;
}

export interface NativeSae {
  info(): NativeSaeInfo;
  encode(x: NativeTensor): Promise<NativeTensor>;
  /** x: the input the latents came from (required when normalizeActivations is not "none") */
  decode(f: NativeTensor, x?: NativeTensor): Promise<NativeTensor>;
  tensors(): Record<string, NativeTensor>;
  save(dir: string): Promise<void>;
  readonly disposed: boolean;
  dispose(): void;
}

export interface NativeTrainSaeResult {
  /** mse: raw activation scale (as evalSae); loss: training scale (activations x scale) */
  saes: { name: string; folder: string; dSae: number; l1: number; loss: number; mse: number; l0: number; deadFraction: number }[];
  /** steps and tokens trained over the whole run (resumed sessions included) */
  steps: number;
  tokens: number;
  /** tokens trained by this call; seconds and tokensPerSecond are this call's too */
  sessionTokens: number;
  dIn: number;
  seconds: number;
  tokensPerSecond: number;
  scale: number;
  resumedFrom: number;
  stopped: boolean;
}

export interface NativeSaeEval {
  mse: number;
  explained_variance: number;
  l0: number;
  l1: number;
  dead_fraction: number;
  n_tokens: number;
  d_in: number;
  d_sae: number;
  /**
   * log10 feature density over the latents: counts[i] latents that fired with log10 density in
   * [log10_edges[i], log10_edges[i+1]); dead latents never fired. sum(counts) + dead = d_sae.
   */
  density_histogram: { log10_edges: number[]; counts: number[]; dead: number };
}

export interface SaeNative {
  SaeHandle: new () => NativeSae;
  loadSae(dir: string): Promise<NativeSae>;
  trainSae(opts: Record<string, unknown> & NativeJobOptions): Promise<NativeTrainSaeResult>;
  evalSae(
    sae: NativeSae | string,
    acts: string,
    opts?: { hook?: string; layer?: number; batchSize?: number } & NativeJobOptions,
  ): Promise<NativeSaeEval>;
}

// Modules add their interfaces here (QuantNative, ModelNative, SaeNative, AnalysisNative) and list them below.
export interface NativeAddon extends CommonNative, IoNative, ModelNative, AnalysisNative, QuantNative, TrainNative, SaeNative {}
