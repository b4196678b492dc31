// Small synthetic SAEs and activations for the analysis tests, written in the on-disk formats qsae reads
// (SAELens SAE folders, plain .safetensors activations, activation stores with manifest + shards).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { saveSafetensors } from "../../src/io/safetensors.js";
import { Tensor } from "../../src/tensor.js";

/** Deterministic PRNG (mulberry32) with normal draws. */
export function rng(seed: number) {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

export interface SaeWeights {
  d: number;
  M: number;
  W_enc: Float32Array; // [d, M]
  b_enc: Float32Array;
  W_dec: Float32Array; // [M, d]
  b_dec: Float32Array;
  applyBDec: boolean;
}

export function randomSae(d: number, M: number, seed: number, applyBDec = true): SaeWeights {
  const r = rng(seed);
  const W_dec = new Float32Array(M * d).map(() => r.normal() / Math.sqrt(d));
  const W_enc = new Float32Array(d * M);
  for (let i = 0; i < d; i++) for (let j = 0; j < M; j++) W_enc[i * M + j] = W_dec[j * d + i] * 1.5 + 0.1 * r.normal();
  const b_enc = new Float32Array(M).map(() => -0.3 + 0.2 * r.normal());
  const b_dec = new Float32Array(d).map(() => 0.1 * r.normal());
  return { d, M, W_enc, b_enc, W_dec, b_dec, applyBDec };
}

export async function writeSae(dir: string, s: SaeWeights): Promise<string> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "cfg.json"),
    JSON.stringify({ d_in: s.d, d_sae: s.M, architecture: "standard", apply_b_dec_to_input: s.applyBDec, dtype: "float32" }),
  );
  await saveSafetensors(join(dir, "sae_weights.safetensors"), {
    W_enc: Tensor.from(s.W_enc, [s.d, s.M]),
    b_enc: Tensor.from(s.b_enc, [s.M]),
    W_dec: Tensor.from(s.W_dec, [s.M, s.d]),
    b_dec: Tensor.from(s.b_dec, [s.d]),
  });
  return dir;
}

export interface Acts {
  N: number;
  d: number;
  x: Float32Array;
  doc?: Int32Array;
  tokens?: BigInt64Array;
}

export async function writeActsFile(path: string, a: Acts): Promise<string> {
  const t: Record<string, Tensor> = { acts: Tensor.from(a.x, [a.N, a.d]) };
  if (a.doc) t.doc = Tensor.from(a.doc, [a.N]);
  if (a.tokens) t.tokens = Tensor.from(a.tokens, [a.N]);
  await saveSafetensors(path, t);
  return path;
}

/** An activation store (manifest.json + shards) holding `acts.<hook>.<layer>` for one hook and layer. */
export async function writeStore(dir: string, a: Acts, hook: string, layer: number, shardRows: number): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const shards: { file: string; rows: number }[] = [];
  for (let r0 = 0, i = 0; r0 < a.N; r0 += shardRows, i++) {
    const n = Math.min(shardRows, a.N - r0);
    const file = `shard-${String(i).padStart(5, "0")}.safetensors`;
    const pos = new Int32Array(n).map((_, k) => k);
    await saveSafetensors(join(dir, file), {
      [`acts.${hook}.${layer}`]: Tensor.from(a.x.slice(r0 * a.d, (r0 + n) * a.d), [n, a.d]),
      tokens: Tensor.from(a.tokens!.slice(r0, r0 + n), [n]),
      doc: Tensor.from(a.doc!.slice(r0, r0 + n), [n]),
      pos: Tensor.from(pos, [n]),
    });
    shards.push({ file, rows: n });
  }
  const manifest = {
    format: "qsae-activations",
    version: 1,
    qsae_version: "0.1.0",
    model: { path: "synthetic", architecture: "none", config_hash: "", weights_hash: "" },
    precision: "fp32",
    compute_dtype: "fp32",
    quantization: {},
    hooks: [hook],
    layers: [layer],
    d_model: a.d,
    dtype: "fp32",
    n_tokens: a.N,
    n_prompts: new Set(a.doc).size,
    prompts_hash: "",
    skip_bos: true,
    shards,
  };
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  return dir;
}

/** Activations of nDocs prompts of `perDoc` tokens; B = A + noise (the "other precision"). */
export function randomActs(N: number, d: number, nDocs: number, seed: number): { a: Acts; b: Acts } {
  const r = rng(seed);
  const xa = new Float32Array(N * d).map(() => r.normal());
  const xb = xa.map((v) => v + 0.35 * r.normal());
  const doc = new Int32Array(N).map((_, i) => Math.floor((i * nDocs) / N));
  const tokens = new BigInt64Array(N).map((_, i) => BigInt((i * 7919) % 1000));
  return { a: { N, d, x: xa, doc, tokens }, b: { N, d, x: xb, doc, tokens } };
}

// ---- the plain reference: issue 6's definitions with loops, float64 ----

export function encode(s: SaeWeights, x: Float32Array, N: number): Float64Array {
  const { d, M } = s;
  const f = new Float64Array(N * M);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < M; j++) {
      let pre = s.b_enc[j];
      for (let i = 0; i < d; i++) pre += (x[n * d + i] - (s.applyBDec ? s.b_dec[i] : 0)) * s.W_enc[i * M + j];
      f[n * M + j] = Math.max(0, pre);
    }
  }
  return f;
}

function pearson(x: number[], y: number[]): number {
  const n = x.length;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
    syy += (y[i] - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}
const isConst = (v: number[]) => v.every((x) => x === v[0]);
const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

export function referenceTransfer(s: SaeWeights, xa: Float32Array, xb: Float32Array, N: number, k: number) {
  const { d, M } = s;
  const FA = encode(s, xa, N);
  const FB = encode(s, xb, N);
  const row = (F: Float64Array, n: number) => Array.from(F.subarray(n * M, (n + 1) * M));
  const col = (F: Float64Array, j: number) => Array.from({ length: N }, (_, n) => F[n * M + j]);
  const sc: number[] = [];
  const tk: number[] = [];
  const jac: number[] = [];
  let agree = 0;
  for (let n = 0; n < N; n++) {
    const a = row(FA, n);
    const b = row(FB, n);
    const za = a.every((v) => v === 0);
    const zb = b.every((v) => v === 0);
    if (!(za && zb)) sc.push(isConst(a) || isConst(b) ? 0 : pearson(a, b));
    const actA = a.map((v) => v > 0);
    const actB = b.map((v) => v > 0);
    const nA = actA.filter(Boolean).length;
    let inter = 0;
    let union = 0;
    for (let j = 0; j < M; j++) {
      if (actA[j] && actB[j]) inter++;
      if (actA[j] || actB[j]) union++;
      if (actA[j] === actB[j]) agree++;
    }
    if (union > 0) jac.push(inter / union);
    const K = Math.min(k, nA);
    if (K > 0) {
      const order = (v: number[]) =>
        v
          .map((x, i) => [x, i] as const)
          .sort((p, q) => q[0] - p[0] || p[1] - q[1])
          .slice(0, K)
          .map((p) => p[1]);
      const ta = new Set(order(a));
      tk.push(order(b).filter((i) => ta.has(i)).length / K);
    }
  }
  const fc: number[] = [];
  let deadA = 0;
  let deadB = 0;
  for (let j = 0; j < M; j++) {
    const a = col(FA, j);
    const b = col(FB, j);
    if (!b.some((v) => v > 0)) deadB++;
    if (!a.some((v) => v > 0)) {
      deadA++;
      continue;
    }
    fc.push(isConst(b) ? 0 : pearson(a, b));
  }
  const recon = (F: Float64Array, x: Float32Array) => {
    let sse = 0;
    let sst = 0;
    let l0 = 0;
    const mu = new Float64Array(d);
    for (let n = 0; n < N; n++) for (let i = 0; i < d; i++) mu[i] += x[n * d + i] / N;
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < d; i++) {
        let h = s.b_dec[i];
        for (let j = 0; j < M; j++) h += F[n * M + j] * s.W_dec[j * d + i];
        sse += (x[n * d + i] - h) ** 2;
        sst += (x[n * d + i] - mu[i]) ** 2;
      }
      for (let j = 0; j < M; j++) l0 += F[n * M + j] > 0 ? 1 : 0;
    }
    return { ev: 1 - sse / sst, mse: sse / (N * d), l0: l0 / N };
  };
  const ra = recon(FA, xa);
  const rb = recon(FB, xb);
  return {
    sample_correlation: mean(sc),
    feature_correlation: mean(fc),
    topk_agreement: mean(tk),
    sparsity_agreement: agree / (N * M),
    active_jaccard: mean(jac),
    explained_variance_a: ra.ev,
    explained_variance_b: rb.ev,
    mse_a: ra.mse,
    mse_b: rb.mse,
    l0_a: ra.l0,
    l0_b: rb.l0,
    dead_fraction_a: deadA / M,
    dead_fraction_b: deadB / M,
  };
}
