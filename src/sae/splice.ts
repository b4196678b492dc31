// Loss recovered, with a model: an SAE's reconstruction spliced into the forward pass at its hook point,
// against the clean forward and a zero ablation of the same activations (native/sae/splice.h does the work).
import { leftPad } from "../model/generate.js";
import { nativeModelOf, type Model } from "../model/model.js";
import { native } from "../native/addon.js";
import { nativeTensor, Tensor } from "../tensor.js";
import { Sae } from "./index.js";

export interface SpliceEval {
  /** Mean next-token cross-entropy (nats/token): clean model, SAE spliced in, activations zeroed. */
  ce_orig: number;
  ce_sae: number;
  ce_zero: number;
  /** Loss recovered: (ce_zero − ce_sae) / (ce_zero − ce_orig). 1 = nothing lost; 0 = as bad as zero ablation. */
  ce_score: number;
  /** Mean KL(p_orig ‖ p_sae) and KL(p_orig ‖ p_zero) per predicted token (nats). */
  kl_sae: number;
  kl_zero: number;
  /** Predicted positions scored (a position counts when it and the next one are real tokens). */
  tokens: number;
  hook: string;
  layer: number;
}

export interface SpliceEvalOptions {
  /** Default: the SAE's metadata.hook_name (or hook_name), else resid_post. */
  hook?: string;
  /** Default: the SAE's metadata.layer (or hook_layer). */
  layer?: number;
  /** Prompts per forward pass [8]. */
  batchSize?: number;
  /** Tokens kept per prompt (the first ones) [256]. */
  maxLength?: number;
  signal?: AbortSignal;
  onProgress?: (p: { done: number; total: number }) => void;
}

function fromCfg(cfg: Record<string, unknown>): { hook?: string; layer?: number } {
  const meta = (cfg.metadata ?? {}) as Record<string, unknown>;
  const hook = [meta.hook_name, cfg.hook_name].find((v): v is string => typeof v === "string");
  const layer = [meta.layer, meta.hook_layer, cfg.hook_layer].find((v): v is number => typeof v === "number");
  // SAELens hook names look like blocks.6.hook_resid_post: keep qsae's short name.
  const short = hook?.match(/(resid_pre|resid_post|attn_out|mlp_out)$/)?.[1];
  return { hook: short, layer };
}

/**
 * Splices `sae` into `model` at its hook point for the token sequences `prompts` and reports the next-token
 * cross-entropy with the SAE, without it and with the activations zeroed, the loss recovered (ce_score) and
 * the KL divergence from the clean model.
 */
export async function spliceEvalSae(model: Model, sae: Sae, prompts: readonly number[][], opts: SpliceEvalOptions = {}): Promise<SpliceEval> {
  return (await spliceEvalSaes(model, [sae], prompts, opts))[0];
}

/**
 * spliceEvalSae for several SAEs of the same site (hook and layer) at once: each batch's clean and
 * zero-ablated forward passes run once for all of them. Results in the order of `saes`.
 */
export async function spliceEvalSaes(model: Model, saes: readonly Sae[], prompts: readonly number[][], opts: SpliceEvalOptions = {}): Promise<SpliceEval[]> {
  if (saes.length === 0) throw new RangeError("saes: need at least one SAE");
  const sites = saes.map((sae) => {
    const meta = fromCfg(sae.info.cfg);
    return { hook: opts.hook ?? meta.hook ?? "resid_post", layer: opts.layer ?? meta.layer };
  });
  const { hook, layer } = sites[0];
  if (layer === undefined) throw new TypeError("layer: the SAE's cfg.json names no layer; pass one");
  if (sites.some((s) => s.hook !== hook || s.layer !== layer))
    throw new RangeError(`saes: all SAEs must read the same site (got ${[...new Set(sites.map((s) => `${s.hook}.${s.layer}`))].join(", ")}); pass hook and layer to override`);
  if (!Number.isInteger(layer) || layer < 0 || layer >= model.info.numLayers)
    throw new RangeError(`layer: ${layer} is not a layer of this model (0..${model.info.numLayers - 1})`);
  for (const sae of saes)
    if (sae.info.dIn !== model.info.hiddenSize)
      throw new RangeError(`SAE d_in ${sae.info.dIn} does not match the model's hidden size ${model.info.hiddenSize}`);
  const maxLength = opts.maxLength ?? 256;
  const batchSize = opts.batchSize ?? 8;
  const seqs = prompts.map((p) => p.slice(0, maxLength)).filter((p) => p.length >= 2);
  if (seqs.length === 0) throw new RangeError("prompts: need at least one prompt of 2 or more tokens");
  const pad = model.info.padTokenId ?? model.info.eosTokenIds[0] ?? 0;
  const sums = saes.map(() => ({ nllOrig: 0, nllSae: 0, nllZero: 0, klSae: 0, klZero: 0, tokens: 0 }));
  const h = nativeModelOf(model);
  const handles = saes.map((s) => Sae.nativeOf(s));
  for (let i = 0; i < seqs.length; i += batchSize) {
    opts.signal?.throwIfAborted();
    const batch = seqs.slice(i, i + batchSize);
    const { ids, mask, T } = leftPad(batch, pad);
    const idsT = Tensor.from(ids, [batch.length, T]);
    const maskT = Tensor.from(mask, [batch.length, T]);
    try {
      const rs = await native().spliceEval(h, handles, nativeTensor(idsT), nativeTensor(maskT), { hook, layer });
      rs.forEach((r, j) => {
        for (const k of Object.keys(sums[j]) as (keyof (typeof sums)[number])[]) sums[j][k] += r[k];
      });
    } finally {
      idsT.dispose();
      maskT.dispose();
    }
    opts.onProgress?.({ done: Math.min(i + batchSize, seqs.length), total: seqs.length });
  }
  return sums.map((sum) => {
    const n = sum.tokens;
    const ce_orig = sum.nllOrig / n, ce_sae = sum.nllSae / n, ce_zero = sum.nllZero / n;
    return {
      ce_orig,
      ce_sae,
      ce_zero,
      ce_score: (ce_zero - ce_sae) / (ce_zero - ce_orig),
      kl_sae: sum.klSae / n,
      kl_zero: sum.klZero / n,
      tokens: n,
      hook,
      layer,
    };
  });
}
