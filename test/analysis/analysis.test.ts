// Cross-precision analysis: transfer metrics against a plain-loop implementation of issue 6's definitions,
// known cases (identical inputs, permuted+rotated SAE copies), the LAP solvers against scipy, the CLI's
// JSON shape and its errors on bad input.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";

import { align, linearAssignment, TRANSFER_METRICS, transfer, transferWithDetails } from "../../src/analysis/index.js";
import { loadSafetensors, saveSafetensors } from "../../src/io/safetensors.js";
import { Tensor } from "../../src/tensor.js";
import { runCli } from "../helpers/cli.js";
import { haveShared, sharedPath, sharedSkipReason } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";
import {
  type Acts,
  randomActs,
  randomSae,
  referenceTransfer,
  rng,
  type SaeWeights,
  writeActsFile,
  writeSae,
  writeStore,
} from "./fixtures.js";

const dir = tempDir("qsae-analysis-");
const refScript = join(fileURLToPath(new URL(".", import.meta.url)), "reference.py");
const havePython = spawnSync("python3", ["-c", "import numpy, scipy.optimize"]).status === 0;
if (!havePython) console.warn("qsae tests: python3 with numpy/scipy not found: scipy comparisons skipped");

function python(args: string[]): any {
  const r = spawnSync("python3", [refScript, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`reference.py failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const d = 16;
const M = 48;
const N = 240;
const nDocs = 24;
let sae: SaeWeights;
let saeDir: string;
let acts: { a: Acts; b: Acts };
let fileA: string;
let fileB: string;

beforeAll(async () => {
  sae = randomSae(d, M, 1);
  saeDir = await writeSae(join(dir, "sae"), sae);
  acts = randomActs(N, d, nDocs, 2);
  fileA = await writeActsFile(join(dir, "a.safetensors"), acts.a);
  fileB = await writeActsFile(join(dir, "b.safetensors"), acts.b);
});

describe("transfer", () => {
  it("equals a plain implementation of the definitions", async () => {
    const { result: r, details } = await transferWithDetails({ sae: saeDir, actsA: fileA, actsB: fileB, k: 5 });
    const ref = referenceTransfer(sae, acts.a.x, acts.b.x, N, 5);
    for (const m of TRANSFER_METRICS) expect(r[m], m).toBeCloseTo(ref[m], 5);
    expect(r.n_tokens).toBe(N);
    expect(r.n_features).toBe(M);
    expect(details.unit).toBe("doc");
    expect(details.units).toBe(nDocs);
    expect(details.resamples).toBe(1000);
    // sanity of the data: B is a noisy copy, so the metrics are informative (not 0, not 1)
    expect(ref.sample_correlation).toBeGreaterThan(0.3);
    expect(ref.sample_correlation).toBeLessThan(0.99);
    for (const m of TRANSFER_METRICS) {
      const [lo, hi] = r.ci95[m];
      expect(lo!, m).toBeLessThanOrEqual(r[m]! + 1e-12);
      expect(hi!, m).toBeGreaterThanOrEqual(r[m]! - 1e-12);
    }
  });

  it("identical activations give correlations and agreements of 1", async () => {
    const r = await transfer({ sae: saeDir, actsA: fileA, actsB: fileA, resamples: 200 });
    for (const m of ["sample_correlation", "feature_correlation", "topk_agreement", "sparsity_agreement", "active_jaccard"] as const) {
      expect(r[m]).toBeCloseTo(1, 12);
      expect(r.ci95[m][0]).toBeCloseTo(1, 12);
      expect(r.ci95[m][1]).toBeCloseTo(1, 12);
    }
    expect(r.explained_variance_a).toBe(r.explained_variance_b);
    expect(r.l0_a).toBe(r.l0_b);
  });

  it("bootstrap intervals match a naive prompt bootstrap in width", async () => {
    const r = await transfer({ sae: saeDir, actsA: fileA, actsB: fileB });
    // naive: resample the 24 prompts, recompute l0_a and sparsity agreement from per-prompt sums
    const ref = referenceTransfer(sae, acts.a.x, acts.b.x, N, 10);
    const perDoc = Array.from({ length: nDocs }, () => ({ n: 0, l0: 0 }));
    const { encode } = await import("./fixtures.js");
    const FA = encode(sae, acts.a.x, N);
    for (let n = 0; n < N; n++) {
      const doc = acts.a.doc![n];
      perDoc[doc].n++;
      for (let j = 0; j < M; j++) perDoc[doc].l0 += FA[n * M + j] > 0 ? 1 : 0;
    }
    const g = rng(99);
    const vals: number[] = [];
    for (let b = 0; b < 2000; b++) {
      let n = 0;
      let l0 = 0;
      for (let i = 0; i < nDocs; i++) {
        const u = perDoc[Math.floor(g.uniform() * nDocs)];
        n += u.n;
        l0 += u.l0;
      }
      vals.push(l0 / n);
    }
    vals.sort((p, q) => p - q);
    const naiveWidth = vals[Math.floor(0.975 * vals.length)] - vals[Math.floor(0.025 * vals.length)];
    const width = r.ci95.l0_a[1]! - r.ci95.l0_a[0]!;
    expect(r.l0_a).toBeCloseTo(ref.l0_a, 9);
    expect(width / naiveWidth).toBeGreaterThan(0.75);
    expect(width / naiveWidth).toBeLessThan(1.33);
  });

  it("reads activation stores (several shards, --hook/--layer) like the plain files", async () => {
    const storeA = await writeStore(join(dir, "storeA"), acts.a, "resid_post", 3, 100);
    const storeB = await writeStore(join(dir, "storeB"), acts.b, "resid_post", 3, 70);
    const plain = await transfer({ sae: saeDir, actsA: fileA, actsB: fileB, resamples: 100 });
    const store = await transfer({ sae: saeDir, actsA: storeA, actsB: storeB, hook: "resid_post", layer: 3, resamples: 100 });
    for (const m of TRANSFER_METRICS) expect(store[m], m).toBeCloseTo(plain[m]!, 9);
    for (const m of TRANSFER_METRICS) {
      expect(store.ci95[m][0]!, m).toBeCloseTo(plain.ci95[m][0]!, 9);
      expect(store.ci95[m][1]!, m).toBeCloseTo(plain.ci95[m][1]!, 9);
    }
  });

  it("CLI --json prints exactly the issue's fields", () => {
    const r = runCli(["transfer", "--sae", saeDir, "--acts-a", fileA, "--acts-b", fileB, "--k", "3", "--resamples", "50", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(Object.keys(j).sort()).toEqual([...TRANSFER_METRICS, "n_tokens", "n_features", "ci95"].sort());
    expect(Object.keys(j.ci95).sort()).toEqual([...TRANSFER_METRICS].sort());
    expect(j.n_tokens).toBe(N);
    const ref = referenceTransfer(sae, acts.a.x, acts.b.x, N, 3);
    expect(j.topk_agreement).toBeCloseTo(ref.topk_agreement, 6);
    const human = runCli(["transfer", "--sae", saeDir, "--acts-a", fileA, "--acts-b", fileB, "--resamples", "20"]);
    expect(human.status).toBe(0);
    expect(human.stdout).toMatch(/feature_correlation/);
    expect(human.stdout).toMatch(/24 prompts/);
  });

  it("bad input: one clear error naming both inputs", async () => {
    const short = await writeActsFile(join(dir, "short.safetensors"), { ...acts.b, N: N - 1, x: acts.b.x.slice(0, (N - 1) * d), doc: acts.b.doc!.slice(0, N - 1), tokens: acts.b.tokens!.slice(0, N - 1) });
    const r = runCli(["transfer", "--sae", saeDir, "--acts-a", fileA, "--acts-b", short]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(fileA);
    expect(r.stderr).toContain(short);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);

    // The rest through the API (same native messages; spares CLI start-ups).
    const errorOf = async (o: { sae?: string; actsB: string }) => {
      try {
        await transfer({ sae: o.sae ?? saeDir, actsA: fileA, actsB: o.actsB, resamples: 0 });
      } catch (e) {
        return (e as Error).message;
      }
      return "";
    };
    const tokens = acts.b.tokens!.slice();
    tokens[17] = 123456n;
    const shifted = await writeActsFile(join(dir, "shifted.safetensors"), { ...acts.b, tokens });
    let m = await errorOf({ actsB: shifted });
    expect(m).toMatch(/not token-aligned: row 17/);
    expect(m).toContain(fileA);
    expect(m).toContain(shifted);

    const docs = acts.b.doc!.slice();
    docs[30] = 99;
    const otherDocs = await writeActsFile(join(dir, "docs.safetensors"), { ...acts.b, doc: docs });
    m = await errorOf({ actsB: otherDocs });
    expect(m).toMatch(/not aligned: row 30/);
    expect(m).toContain(otherDocs);

    const x = acts.b.x.slice();
    x[5 * d + 3] = Number.NaN;
    const nan = await writeActsFile(join(dir, "nan.safetensors"), { ...acts.b, x });
    m = await errorOf({ actsB: nan });
    expect(m).toMatch(/nan\.safetensors/);
    expect(m).toMatch(/row 5/);

    const other = await writeSae(join(dir, "sae-d8"), randomSae(8, M, 3));
    m = await errorOf({ sae: other, actsB: fileB });
    expect(m).toMatch(/d_in 8/);
    expect(m).toContain(other);
    expect(m).toContain(fileA);
    expect(m).toContain(fileB);

    await expect(transfer({ sae: saeDir, actsA: fileA, actsB: fileB, k: 0 })).rejects.toThrow(/k must be/);
  });

  it.skipIf(!haveShared)("real cross-precision activations: tiny-llama3 fp32 vs nf4 (../shared reference) match the plain implementation", async () => {
    const load = async (prec: string): Promise<Acts> => {
      const f = await loadSafetensors(sharedPath("reference", `tiny-llama3.${prec}.safetensors`), ["hidden.1", "input_ids"]);
      const h = f.tensors["hidden.1"];
      const [B, T, D] = h.shape;
      const doc = new Int32Array(B * T).map((_, i) => Math.floor(i / T));
      return { N: B * T, d: D, x: h.toTypedArray() as Float32Array, doc, tokens: f.tensors.input_ids.toTypedArray() as BigInt64Array };
    };
    const fp32 = await load("fp32");
    const nf4 = await load("nf4");
    const s = randomSae(fp32.d, 4 * fp32.d, 21);
    s.b_enc.fill(-0.05);
    const sdir = await writeSae(join(dir, "sae-llama3"), s);
    const pa = await writeActsFile(join(dir, "llama3-fp32.safetensors"), fp32);
    const pb = await writeActsFile(join(dir, "llama3-nf4.safetensors"), nf4);
    const { result: r, details } = await transferWithDetails({ sae: sdir, actsA: pa, actsB: pb, resamples: 200 });
    const ref = referenceTransfer(s, fp32.x, nf4.x, fp32.N, 10);
    for (const m of TRANSFER_METRICS) expect(Math.abs(r[m]! - ref[m]), m).toBeLessThan(1e-5 * Math.max(1, Math.abs(ref[m])));
    expect(details.unit).toBe("doc");
    expect(details.units).toBe(2);
    // NF4 moves the residual stream, but the same SAE still describes it closely
    expect(r.sample_correlation!).toBeLessThan(1);
    expect(r.sample_correlation!).toBeGreaterThan(0.5);
  });
  if (!haveShared) it.skip(sharedSkipReason, () => {});

  it("an aborted signal cancels the job", async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(transfer({ sae: saeDir, actsA: fileA, actsB: fileB, signal: ac.signal })).rejects.toThrow(/abort/i);
  });
});

/** Applies the same orthogonal map (a chain of Givens rotations) to every length-d vector. */
function rotator(dim: number, seed: number, angle: number) {
  const g = rng(seed);
  const ops = Array.from({ length: 3 * dim }, () => {
    const p = Math.floor(g.uniform() * dim);
    let q = Math.floor(g.uniform() * (dim - 1));
    if (q >= p) q++;
    return { p, q, t: angle * (g.uniform() * 2 - 1) };
  });
  return (v: Float64Array) => {
    for (const { p, q, t } of ops) {
      const a = v[p];
      const b = v[q];
      v[p] = a * Math.cos(t) - b * Math.sin(t);
      v[q] = a * Math.sin(t) + b * Math.cos(t);
    }
  };
}

function permutedRotatedCopy(s: SaeWeights, perm: number[], seed: number): SaeWeights {
  const rot = rotator(s.d, seed, 0.25);
  const W_dec = new Float32Array(s.M * s.d);
  const W_enc = new Float32Array(s.d * s.M);
  for (let i = 0; i < s.M; i++) {
    const v = Float64Array.from(s.W_dec.subarray(i * s.d, (i + 1) * s.d));
    rot(v);
    W_dec.set(Float32Array.from(v, (x) => x * 2), perm[i] * s.d); // scaled: cosines ignore norms
    const e = Float64Array.from({ length: s.d }, (_, r) => s.W_enc[r * s.M + i]);
    rot(e);
    for (let r = 0; r < s.d; r++) W_enc[r * s.M + perm[i]] = e[r];
  }
  return { ...s, W_dec, W_enc };
}

describe("align", () => {
  const Ma = 64;
  const da = 24;
  let a: SaeWeights;
  let dirA: string;
  let dirB: string;
  let perm: number[];

  beforeAll(async () => {
    a = randomSae(da, Ma, 5);
    const g = rng(6);
    perm = Array.from({ length: Ma }, (_, i) => i);
    for (let i = Ma - 1; i > 0; i--) {
      const j = Math.floor(g.uniform() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    dirA = await writeSae(join(dir, "alignA"), a);
    dirB = await writeSae(join(dir, "alignB"), permutedRotatedCopy(a, perm, 7));
  });

  it("a permuted, rotated copy: procrustes_alignment 1 and the permutation recovered (exact and approx)", async () => {
    for (const method of ["exact", "approx"] as const) {
      const r = await align(dirA, dirB, { method });
      expect(r.assignment).toBe(method);
      expect(Array.from(r.permutation)).toEqual(perm);
      expect(Array.from(r.encoder_permutation)).toEqual(perm);
      expect(r.procrustes_alignment).toBeCloseTo(1, 5);
      expect(r.encoder_procrustes_alignment).toBeCloseTo(1, 5);
      expect(r.frac_cosine_ge_0_7).toBe(1);
      expect(r.matched_cosine).toBeLessThan(0.999);
      expect(r.gap_bound).toBeGreaterThanOrEqual(0);
      if (method === "exact") expect(r.gap_bound).toBe(0);
      else expect(r.gap_bound).toBeLessThan(1e-5);
    }
  });

  it.skipIf(!havePython)("equals numpy/scipy on two unrelated SAEs", async () => {
    const other = await writeSae(join(dir, "alignC"), randomSae(da, Ma, 11));
    const r = await align(dirA, other);
    const ref = python(["align", dirA, other]);
    for (const k of [
      "matched_cosine",
      "procrustes_alignment",
      "frac_cosine_ge_0_7",
      "encoder_matched_cosine",
      "encoder_procrustes_alignment",
      "encoder_frac_cosine_ge_0_7",
    ] as const) {
      expect(r[k], k).toBeCloseTo(ref[k], 5);
    }
  });

  it("CLI --json and a feature-count mismatch naming both folders", async () => {
    const r = runCli(["align", dirA, dirB, "--json"]);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(Object.keys(j).sort()).toEqual(
      [
        "matched_cosine",
        "procrustes_alignment",
        "frac_cosine_ge_0_7",
        "encoder_matched_cosine",
        "encoder_procrustes_alignment",
        "encoder_frac_cosine_ge_0_7",
        "n_features",
        "assignment",
        "gap_bound",
        "encoder_gap_bound",
      ].sort(),
    );
    expect(j.assignment).toBe("exact");
    const small = await writeSae(join(dir, "alignSmall"), randomSae(da, 32, 12));
    const bad = runCli(["align", dirA, small]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain(dirA);
    expect(bad.stderr).toContain(small);
  });
});

describe("linear assignment", () => {
  it.skipIf(!havePython)("exact equals scipy's optimum; approx is within its certified gap", async () => {
    const cases = [
      [7, 1],
      [60, 2],
      [257, 3],
    ].map(([n, seed]) => {
      const g = rng(seed);
      // integers in [0, 9] make ties common
      const w = new Float32Array(n * n).map(() => (seed === 2 ? Math.floor(g.uniform() * 10) : g.normal()));
      return { n, name: `w${n}`, w, t: Tensor.from(w, [n, n]) };
    });
    const path = join(dir, "lap.safetensors");
    await saveSafetensors(path, Object.fromEntries(cases.map((c) => [c.name, c.t])));
    const refs = python(["lap", path]);
    for (const { n, name, w, t } of cases) {
      const ref = refs[name];
      const ex = await linearAssignment(t);
      expect(ex.exact).toBe(true);
      expect(new Set(ex.colOfRow).size).toBe(n);
      let v = 0;
      for (let i = 0; i < n; i++) v += w[i * n + ex.colOfRow[i]];
      expect(v).toBeCloseTo(ref.value, 6);
      expect(ex.value).toBeCloseTo(ref.value, 6);
      const ap = await linearAssignment(t, { method: "approx", epsFinal: 1e-4 });
      expect(ap.exact).toBe(false);
      expect(new Set(ap.colOfRow).size).toBe(n);
      expect(ap.value).toBeLessThanOrEqual(ref.value + 1e-6);
      expect(ref.value - ap.value).toBeLessThanOrEqual(ap.gapBound + 1e-6);
      expect(ap.gapBound).toBeLessThanOrEqual(n * 1e-4 + 1e-6);
    }
  });

  it("progress and cancellation reach the native solver", async () => {
    const n = 1200;
    const g = rng(4);
    const t = Tensor.from(new Float32Array(n * n).map(() => g.normal()), [n, n]);
    const ac = new AbortController();
    let calls = 0;
    const p = linearAssignment(t, {
      signal: ac.signal,
      onProgress: () => {
        calls++;
        ac.abort();
      },
    });
    await expect(p).rejects.toThrow(/abort/i);
    expect(calls).toBeGreaterThan(0);
  });
});
