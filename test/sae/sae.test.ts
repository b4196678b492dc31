// SAE API and CLI: train (single and grid), eval-sae, load/encode, abort + resume, kill -9 + resume to the
// same weights, bad input. Small synthetic data so the file stays fast.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { loadSafetensors, saveSafetensors } from "../../src/io/safetensors.js";
import { evalSae, Sae, trainSae } from "../../src/sae/index.js";
import { Tensor } from "../../src/tensor.js";
import { runCli } from "../helpers/cli.js";
import { repoRoot } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("qsae-sae-");

// rows = sparse sums of 3 of 40 random unit directions in 16 dims (a seeded LCG, so reruns match)
function synthetic(n: number, d: number, seed: number, nanRow = -1): Float32Array {
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const feats: number[][] = [];
  for (let f = 0; f < 40; f++) {
    const v = Array.from({ length: d }, () => rnd() - 0.5);
    const nrm = Math.hypot(...v);
    feats.push(v.map((x) => x / nrm));
  }
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++)
    for (let a = 0; a < 3; a++) {
      const f = feats[Math.floor(rnd() * 40)];
      const m = 1 + rnd();
      for (let j = 0; j < d; j++) out[i * d + j] += m * f[j];
    }
  if (nanRow >= 0) out[nanRow * d + 2] = Number.NaN;
  return out;
}

async function writeActs(name: string, n: number, nanRow = -1): Promise<string> {
  const p = join(dir, name);
  await saveSafetensors(p, { acts: Tensor.from(synthetic(n, 16, 1, nanRow), [n, 16]) });
  return p;
}

async function weightsOf(folder: string): Promise<Float32Array[]> {
  const r = await loadSafetensors(join(folder, "sae_weights.safetensors"));
  return ["W_enc", "b_enc", "W_dec", "b_dec"].map((k) => r.tensors[k].toTypedArray() as Float32Array);
}

describe("SAE training and evaluation", () => {
  it("trains a grid through the API, with progress; eval metrics and SAELens cfg", async () => {
    const acts = await writeActs("a.safetensors", 3000);
    const out = join(dir, "grid");
    const seen: number[] = [];
    const r = await trainSae({ acts, type: "relu", expansion: [1, 2], l1: 1e-3, tokens: 256 * 30, batchSize: 256, out, onProgress: (p) => seen.push(p.done) });
    expect(r.saes.map((s) => s.name)).toEqual(["x1", "x2"]);
    expect(r.steps).toBe(30);
    expect(seen.length).toBeGreaterThan(0);
    const cfg = JSON.parse(readFileSync(join(out, "x2", "cfg.json"), "utf8"));
    // SAELens's name for relu is "standard"; qsae's own type is kept in metadata
    expect(cfg).toMatchObject({ d_in: 16, d_sae: 32, architecture: "standard", dtype: "float32", normalize_activations: "none" });
    expect(cfg.metadata).toMatchObject({ qsae_architecture: "relu", model: null, precision: null, quantization: null, hook_name: null, layer: null });
    expect(existsSync(join(out, "x2", "sparsity.safetensors"))).toBe(true);
    const sae = await Sae.load(join(out, "x2"));
    expect(sae.info.dSae).toBe(32);
    expect(sae.info.architecture).toBe("relu");
    expect(sae.info.normalizeActivations).toBe("none");
    const x = Tensor.from(synthetic(5, 16, 1), [5, 16]);
    const f = await sae.encode(x);
    expect(f.shape).toEqual([5, 32]);
    const xh = await sae.decode(f);
    expect(xh.shape).toEqual([5, 16]);
    const e = await evalSae(sae, acts);
    expect(e.explained_variance).toBeGreaterThan(0);
    expect(e.explained_variance).toBeLessThanOrEqual(1);
    expect(e.dead_fraction).toBeGreaterThanOrEqual(0);
    const h = e.density_histogram;
    expect(h.counts.reduce((a, b) => a + b, 0) + h.dead).toBe(e.d_sae);
    expect(h.dead).toBe(Math.round(e.dead_fraction * e.d_sae));
    sae.dispose();
    sae.dispose();
    await expect(sae.encode(x)).rejects.toThrow(/disposed/);
  });

  it("CLI: train + eval-sae --json; bad input exits 1 with one line and leaves no folder", async () => {
    const acts = await writeActs("b.safetensors", 2000);
    const out = join(dir, "cli-topk");
    const t = runCli(["train", "--acts", acts, "--type", "topk", "--k", "4", "--expansion", "2", "--tokens", "5120", "--batch-size", "256", "--out", out, "--json"]);
    expect(t.status, t.stderr).toBe(0);
    expect(JSON.parse(t.stdout).saes[0].dSae).toBe(32);
    const e = runCli(["eval-sae", out, "--acts", acts, "--json"]);
    expect(e.status, e.stderr).toBe(0);
    const j = JSON.parse(e.stdout);
    for (const k of ["mse", "explained_variance", "l0", "l1", "dead_fraction"]) expect(typeof j[k]).toBe("number");
    expect(j.l0).toBeLessThanOrEqual(4);

    const bad = await writeActs("nan.safetensors", 1000, 617);
    const badOut = join(dir, "bad");
    const b = runCli(["train", "--acts", bad, "--expansion", "1", "--tokens", "2048", "--batch-size", "256", "--out", badOut]);
    expect(b.status).toBe(1);
    expect(b.stderr).toMatch(/nan\.safetensors.*row 617.*NaN/);
    expect(b.stderr.trim().split("\n")).toHaveLength(1);
    expect(existsSync(badOut)).toBe(false);
    const mism = runCli(["eval-sae", out, "--acts", await writeActs("d8.safetensors", 10).then(async () => {
      const p = join(dir, "d8.safetensors");
      await saveSafetensors(p, { acts: Tensor.from(new Float32Array(80), [10, 8]) });
      return p;
    })]);
    expect(mism.status).toBe(1);
    expect(mism.stderr).toMatch(/d_in=16/);
    expect(runCli(["train", "--acts", acts, "--out", join(dir, "x"), "--expansion", "1"]).status).not.toBe(0);
  });

  it("abort keeps a checkpoint; resume ends with the same weights as an uninterrupted run", async () => {
    const acts = await writeActs("c.safetensors", 2000);
    const base = { acts, type: "relu" as const, expansion: 1, tokens: 256 * 4000, batchSize: 256, seed: 3 };
    await trainSae({ ...base, out: join(dir, "full") });
    const ac = new AbortController();
    const out = join(dir, "aborted");
    await expect(
      trainSae({ ...base, out, signal: ac.signal, onProgress: (p) => { if (p.done > 0) ac.abort(); } }),
    ).rejects.toThrow(/abort/i);
    expect(existsSync(`${out}.checkpoint.safetensors`)).toBe(true);
    const r = await trainSae({ ...base, out, resume: true });
    expect(r.resumedFrom).toBeGreaterThan(0);
    // totals over the whole run; this call's tokens apart
    expect(r.steps).toBe(4000);
    expect(r.tokens).toBe(256 * 4000);
    expect(r.sessionTokens).toBe(256 * (4000 - r.resumedFrom));
    const a = await weightsOf(join(dir, "full"));
    const b = await weightsOf(out);
    for (let i = 0; i < 4; i++) expect(Buffer.from(b[i].buffer).equals(Buffer.from(a[i].buffer))).toBe(true);
  });

  it("a run killed with SIGKILL resumes to the same weights", async () => {
    const acts = await writeActs("k.safetensors", 4000);
    const args = ["train", "--acts", acts, "--expansion", "2", "--tokens", String(256 * 400), "--batch-size", "256", "--seed", "5", "--checkpoint-every", "5"];
    const full = runCli([...args, "--out", join(dir, "k-full")]);
    expect(full.status, full.stderr).toBe(0);
    const out = join(dir, "k-killed");
    await new Promise<void>((resolve) => {
      const child = spawn(process.execPath, [join(repoRoot, "bin", "qsae.js"), ...args, "--out", out], { stdio: "ignore" });
      const timer = setInterval(() => {
        if (existsSync(`${out}.checkpoint.safetensors`)) {
          clearInterval(timer);
          child.kill("SIGKILL");
        }
      }, 20);
      child.on("exit", () => {
        clearInterval(timer);
        resolve();
      });
    });
    const killedEarly = existsSync(`${out}.checkpoint.safetensors`);
    const res = runCli([...args, "--out", out, "--resume", "--json"]);
    expect(res.status, res.stderr).toBe(0);
    if (killedEarly) expect(JSON.parse(res.stdout).resumedFrom).toBeGreaterThan(0);
    const a = await weightsOf(join(dir, "k-full"));
    const b = await weightsOf(out);
    for (let i = 0; i < 4; i++) expect(Buffer.from(b[i].buffer).equals(Buffer.from(a[i].buffer))).toBe(true);
  });

  it("exact budgets; --k with relu and an --out on the activations are refused before training", async () => {
    const acts = await writeActs("e.safetensors", 2000);
    const r = await trainSae({ acts, type: "topk", k: 4, expansion: 1, epochs: 1, batchSize: 256, out: join(dir, "epoch") });
    expect(r.steps).toBe(8);
    expect(r.tokens).toBe(2000);
    expect(r.sessionTokens).toBe(2000);
    await expect(trainSae({ acts, type: "relu", k: 4, tokens: 512, batchSize: 256, out: join(dir, "k-relu") })).rejects.toThrow(
      /--k applies to topk and batchtopk SAEs only/,
    );
    await expect(trainSae({ acts, type: "topk", l1: [1e-3, 1e-2], tokens: 512, batchSize: 256, out: join(dir, "l1-topk") })).rejects.toThrow(
      /--l1 applies to relu and jumprelu SAEs only/,
    );
    const before = readFileSync(acts);
    const t = runCli(["train", "--acts", acts, "--expansion", "1", "--tokens", "512", "--batch-size", "256", "--out", acts]);
    expect(t.status).toBe(1);
    expect(t.stderr.trim().split("\n")).toHaveLength(1);
    expect(t.stderr).toMatch(/e\.safetensors: --out is the --acts path itself/);
    expect(readFileSync(acts).equals(before)).toBe(true);
  });

  it("a SAELens folder with normalize_activations layer_norm: encode/decode/evalSae apply it; bad values are refused", async () => {
    const acts = await writeActs("ln.safetensors", 500);
    const d = 16, S = 24;
    let s = 12345;
    const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
    const weights = {
      W_enc: Tensor.from(Float32Array.from({ length: d * S }, rnd), [d, S]),
      b_enc: Tensor.from(Float32Array.from({ length: S }, () => 0.1 * rnd()), [S]),
      W_dec: Tensor.from(Float32Array.from({ length: S * d }, rnd), [S, d]),
      b_dec: Tensor.from(Float32Array.from({ length: d }, () => 0.1 * rnd()), [d]),
    };
    const folder = (name: string, norm: unknown): Promise<string> => {
      const f = join(dir, name);
      mkdirSync(f, { recursive: true });
      writeFileSync(join(f, "cfg.json"), JSON.stringify({ architecture: "standard", d_in: d, d_sae: S, dtype: "float32", apply_b_dec_to_input: true, normalize_activations: norm }));
      return saveSafetensors(join(f, "sae_weights.safetensors"), weights).then(() => f);
    };
    const ln = await Sae.load(await folder("sl-ln", "layer_norm"));
    const none = await Sae.load(await folder("sl-none", "none"));
    expect(ln.info.normalizeActivations).toBe("layer_norm");
    const x = Tensor.from(synthetic(4, d, 1), [4, d]);
    const f = await ln.encode(x);
    await expect(ln.decode(f)).rejects.toThrow(/layer_norm.*decode needs the input/);
    // by hand: per row (x - mean) / (std + 1e-5) with the unbiased std, through the plain SAE, then * std + mean
    const xs = x.toTypedArray() as Float32Array;
    const xn = new Float32Array(xs.length), mean: number[] = [], sd: number[] = [];
    for (let i = 0; i < 4; i++) {
      const row = Array.from(xs.subarray(i * d, (i + 1) * d));
      mean.push(row.reduce((a, b) => a + b, 0) / d);
      sd.push(Math.sqrt(row.reduce((a, b) => a + (b - mean[i]) ** 2, 0) / (d - 1)));
      for (let j = 0; j < d; j++) xn[i * d + j] = (row[j] - mean[i]) / (sd[i] + 1e-5);
    }
    const fRef = (await none.encode(Tensor.from(xn, [4, d]))).toTypedArray() as Float32Array;
    const fGot = f.toTypedArray() as Float32Array;
    for (let i = 0; i < fRef.length; i++) expect(fGot[i]).toBeCloseTo(fRef[i], 4);
    const xhRef = (await none.decode(Tensor.from(fRef, [4, S]))).toTypedArray() as Float32Array;
    const xh = (await ln.decode(f, x)).toTypedArray() as Float32Array;
    for (let i = 0; i < 4; i++) for (let j = 0; j < d; j++) expect(xh[i * d + j]).toBeCloseTo(xhRef[i * d + j] * sd[i] + mean[i], 3);
    const eLn = await evalSae(ln, acts);
    const eNone = await evalSae(none, acts);
    expect(eLn.mse).not.toBeCloseTo(eNone.mse, 3);
    ln.dispose();
    none.dispose();
    await expect(Sae.load(await folder("sl-bad", "batch_norm"))).rejects.toThrow(/cfg\.json: unsupported normalize_activations 'batch_norm'/);
  });
});
