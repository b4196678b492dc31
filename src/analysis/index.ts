// Cross-precision analysis (issue 6): how well one SAE describes two precisions' activations of the same
// tokens (`transfer`), and how similar two SAEs' dictionaries are (`align`). All the work is native and
// streamed; the definitions are documented in native/analysis/transfer.h and align.h.
import { InputError, withCallSite } from "../errors.js";
import { native } from "../native/addon.js";
import { type JobOptions, runJob } from "../native/cancel.js";
import type { NativeLapResult, NativeTransferDetails } from "../native/types.js";
import { nativeTensor, type Tensor } from "../tensor.js";

/** The transfer metrics, in output order (the field names). */
export const TRANSFER_METRICS = [
  "sample_correlation",
  "feature_correlation",
  "topk_agreement",
  "sparsity_agreement",
  "active_jaccard",
  "explained_variance_a",
  "explained_variance_b",
  "mse_a",
  "mse_b",
  "l0_a",
  "l0_b",
  "dead_fraction_a",
  "dead_fraction_b",
] as const;
export type TransferMetric = (typeof TRANSFER_METRICS)[number];

/** A metric is null when it is undefined for the data (e.g. no token has an active feature). */
export type TransferResult = { [K in TransferMetric]: number | null } & {
  n_tokens: number;
  n_features: number;
  /** bootstrap 95% percentile intervals */
  ci95: { [K in TransferMetric]: [number | null, number | null] };
};

export interface TransferDetails {
  /** the bootstrap's resampling unit: prompts ("doc") when the activations have a doc column, else tokens */
  unit: "doc" | "token";
  units: number;
  /** groups of units for the per-feature metrics (= units when units ≤ the cap: then exact) */
  groups: number;
  resamples: number;
  k: number;
  dIn: number;
}

export interface TransferOptions extends JobOptions {
  /** SAE folder (qsae's own or SAELens') */
  sae: string;
  /** activation store folder or .safetensors file with `acts` [N, D] (+ optional `doc`, `tokens`) */
  actsA: string;
  actsB: string;
  hook?: string;
  layer?: number;
  /** top-k of topk_agreement (default 10) */
  k?: number;
  /** bootstrap resamples (default 1000; 0 disables the intervals) */
  resamples?: number;
  /** bootstrap seed (fixed default) */
  seed?: number;
  /** where the SAE encodes: "cpu" (default), "cuda", "cuda:N" */
  device?: string;
}

function checkInt(name: string, v: number | undefined, min: number): void {
  if (v === undefined) return;
  if (!Number.isInteger(v) || v < min) throw new InputError(`${name} must be an integer ≥ ${min}, got ${v}`);
}

/** Transfer metrics and their details (bootstrap unit, groups). */
export async function transferWithDetails(
  o: TransferOptions,
): Promise<{ result: TransferResult; details: TransferDetails }> {
  for (const key of ["sae", "actsA", "actsB"] as const) {
    if (typeof o[key] !== "string" || o[key].length === 0) throw new InputError(`transfer: option ${key} must be a path`);
  }
  checkInt("k", o.k, 1);
  checkInt("resamples", o.resamples, 0);
  checkInt("layer", o.layer, 0);
  checkInt("seed", o.seed, 0);
  const r = await runJob(o, (n) =>
    withCallSite(
      native().analysisTransfer(o.sae, o.actsA, o.actsB, {
        ...n,
        hook: o.hook,
        layer: o.layer,
        k: o.k,
        nBoot: o.resamples,
        seed: o.seed,
        device: o.device,
      }),
    ),
  );
  const { details, ...rest } = r;
  return { result: rest as unknown as TransferResult, details: details as NativeTransferDetails as TransferDetails };
}

/** How well the SAE `sae` describes both activation sets (same tokens, two precisions). */
export async function transfer(o: TransferOptions): Promise<TransferResult> {
  return (await transferWithDetails(o)).result;
}

export interface AlignOptions extends JobOptions {
  /** "auto" (default): exact up to exactMax features, approximate (auction) above */
  method?: "auto" | "exact" | "approx";
  /** default 4096 */
  exactMax?: number;
  /** final ε of the auction (default 1e-6): matched_cosine is within ε of the optimum by construction */
  epsFinal?: number;
}

export interface AlignResult {
  matched_cosine: number;
  procrustes_alignment: number;
  frac_cosine_ge_0_7: number;
  encoder_matched_cosine: number;
  encoder_procrustes_alignment: number;
  encoder_frac_cosine_ge_0_7: number;
  n_features: number;
  d_in: number;
  assignment: "exact" | "approx";
  /** certified bound on (optimal − reported) matched_cosine, from the dual prices (0 when exact) */
  gap_bound: number;
  encoder_gap_bound: number;
  /** feature i of A ↔ feature permutation[i] of B (decoder matching) */
  permutation: Int32Array;
  encoder_permutation: Int32Array;
  /** per-pair cosine after the Procrustes rotation */
  cosines: Float32Array;
  encoder_cosines: Float32Array;
}

/** Aligns the dictionaries of two SAEs with the same d_in and number of features. */
export async function align(saeA: string, saeB: string, o: AlignOptions = {}): Promise<AlignResult> {
  if (typeof saeA !== "string" || typeof saeB !== "string") throw new InputError("align: expected two SAE folders");
  checkInt("exactMax", o.exactMax, 0);
  const r = await runJob(o, (n) =>
    withCallSite(native().analysisAlign(saeA, saeB, { ...n, method: o.method, exactMax: o.exactMax, epsFinal: o.epsFinal })),
  );
  return r as unknown as AlignResult;
}

export type LapResult = NativeLapResult;

/**
 * Maximum-weight perfect matching of a square matrix (any float dtype): `exact` (Jonker–Volgenant
 * shortest augmenting paths) or `approx` (ε-scaling auction with a certified gap bound).
 */
export async function linearAssignment(
  weights: Tensor,
  o: JobOptions & { method?: "exact" | "approx"; epsFinal?: number } = {},
): Promise<LapResult> {
  return runJob(o, (n) =>
    withCallSite(native().linearAssignment(nativeTensor(weights), { ...n, method: o.method, epsFinal: o.epsFinal })),
  );
}
