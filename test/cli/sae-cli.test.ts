// qsae train / eval-sae from the command line: eval-sae takes the hook and layer from the SAE's cfg.json when
// the store holds several; progress off a TTY is throttled; Ctrl-C names the checkpoint and --resume continues
// with a summary of run totals and this session. Tiny inputs (16-dim rows) written byte by byte here, so the
// test process never loads the addon.
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { runCli } from "../helpers/cli.js";
import { repoRoot } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("qsae-sae-cli-");
const D = 16;

type StTensor = { dtype: "F32" | "I32" | "I64"; shape: number[]; data: Buffer };

/** safetensors: 8-byte little-endian header length, JSON header, raw little-endian data. */
function writeSafetensors(path: string, tensors: Record<string, StTensor>): void {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(path, Buffer.concat([len, h, ...Object.values(tensors).map((t) => t.data)]));
}

/** rows = sums of 3 of 40 fixed random unit directions, times `gain` (a seeded LCG: reruns match) */
function rows(n: number, seed: number, gain = 1): Buffer {
  let s = seed >>> 0;
  const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const feats = Array.from({ length: 40 }, () => {
    const v = Array.from({ length: D }, () => rnd() - 0.5);
    const nrm = Math.hypot(...v);
    return v.map((x) => x / nrm);
  });
  const out = new Float32Array(n * D);
  for (let i = 0; i < n; i++)
    for (let a = 0; a < 3; a++) {
      const f = feats[Math.floor(rnd() * 40)];
      const m = gain * (1 + rnd());
      for (let j = 0; j < D; j++) out[i * D + j] += m * f[j];
    }
  return Buffer.from(out.buffer);
}

function writeActs(name: string, n: number): string {
  const p = join(dir, name);
  writeSafetensors(p, { acts: { dtype: "F32", shape: [n, D], data: rows(n, 1) } });
  return p;
}

/** An activation store folder (docs/CONTRACTS format) holding acts.resid_post.1 and acts.resid_post.3. */
function writeTwoLayerStore(name: string, n: number): string {
  const p = join(dir, name);
  mkdirSync(p);
  const ints = (bytes: number, f: (i: number) => number) => {
    const b = Buffer.alloc(n * bytes);
    for (let i = 0; i < n; i++) bytes === 8 ? b.writeBigInt64LE(BigInt(f(i)), i * 8) : b.writeInt32LE(f(i), i * 4);
    return b;
  };
  writeSafetensors(join(p, "shard-00000.safetensors"), {
    "acts.resid_post.1": { dtype: "F32", shape: [n, D], data: rows(n, 7) },
    "acts.resid_post.3": { dtype: "F32", shape: [n, D], data: rows(n, 1, 3) },
    tokens: { dtype: "I64", shape: [n], data: ints(8, (i) => i % 100) },
    doc: { dtype: "I32", shape: [n], data: ints(4, (i) => Math.floor(i / 50)) },
    pos: { dtype: "I32", shape: [n], data: ints(4, (i) => i % 50) },
  });
  const manifest = {
    format: "qsae-activations",
    version: 1,
    qsae_version: "0.1.0",
    model: { path: "synthetic", architecture: "none", config_hash: "0", weights_hash: "0" },
    precision: "fp32",
    compute_dtype: "fp32",
    quantization: null,
    hooks: ["resid_post"],
    layers: [1, 3],
    d_model: D,
    dtype: "fp32",
    n_tokens: n,
    n_prompts: n / 50,
    prompts_hash: "0",
    skip_bos: false,
    shards: [{ file: "shard-00000.safetensors", rows: n }],
  };
  writeFileSync(join(p, "manifest.json"), JSON.stringify(manifest, null, 2));
  return p;
}

// (the optional colon also counts the lines of the unthrottled writer this replaced)
const progressLines = (stderr: string) => stderr.split("\n").filter((l) => /^train:? \d+\/\d+ tok/.test(l));

describe("qsae train / eval-sae (CLI)", () => {
  it("eval-sae takes --hook/--layer from the SAE's cfg.json when the store holds several layers", () => {
    const store = writeTwoLayerStore("store2", 2000);
    const sae = join(dir, "sae-l3");
    const t = runCli(["train", "--acts", store, "--layer", "3", "--tokens", "20000", "--batch-size", "256", "--out", sae, "--json"]);
    expect(t.status, t.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(sae, "cfg.json"), "utf8")).metadata).toMatchObject({ hook_name: "resid_post", layer: 3 });

    const explicit = runCli(["eval-sae", sae, "--acts", store, "--layer", "3", "--json"]);
    expect(explicit.status, explicit.stderr).toBe(0);
    const other = runCli(["eval-sae", sae, "--acts", store, "--layer", "1", "--json"]);
    expect(other.status, other.stderr).toBe(0);
    const dflt = runCli(["eval-sae", sae, "--acts", store, "--json"]);
    expect(dflt.status, dflt.stderr).toBe(0);
    const [e3, e1, ed] = [explicit, other, dflt].map((r) => JSON.parse(r.stdout) as { mse: number; n_tokens: number });
    expect(ed.n_tokens).toBe(2000);
    expect(ed.mse).toBe(e3.mse); // layer 3, not layer 1 (3x larger rows of other directions: a different mse)
    expect(ed.mse).not.toBe(e1.mse);

    // the table names the activations it chose
    const table = runCli(["eval-sae", sae, "--acts", store]);
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/activations \(the SAE's hook and layer\)\s+acts\.resid_post\.3/);

    // SAELens-style cfg.json: top-level hook_name (long form) and hook_layer, no metadata
    const lens = join(dir, "sae-lens");
    cpSync(sae, lens, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(lens, "cfg.json"), "utf8"));
    for (const k of ["metadata", "hook_name", "hook_layer"]) delete cfg[k];
    writeFileSync(join(lens, "cfg.json"), JSON.stringify({ ...cfg, hook_name: "blocks.3.hook_resid_post", hook_layer: 3 }));
    const fromLens = runCli(["eval-sae", lens, "--acts", store, "--json"]);
    expect(fromLens.status, fromLens.stderr).toBe(0);
    expect(JSON.parse(fromLens.stdout).mse).toBe(e3.mse);

    // a layer the store lacks, or none named: one line saying so and how to choose
    writeFileSync(join(lens, "cfg.json"), JSON.stringify({ ...cfg, metadata: { hook_name: "resid_post", layer: 5 } }));
    const missing = runCli(["eval-sae", lens, "--acts", store]);
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim()).toMatch(/^qsae: .*store2: the SAE's cfg\.json names layer 5, which the store does not hold; choose one with --layer \(acts\.resid_post\.1, acts\.resid_post\.3\)$/);
    writeFileSync(join(lens, "cfg.json"), JSON.stringify(cfg));
    const none = runCli(["eval-sae", lens, "--acts", store]);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/several layers.*choose one with --layer/);
  });

  it("progress off a TTY: the first and the last line, then at most one per 5 s", () => {
    const acts = writeActs("a.safetensors", 2000);
    const t0 = Date.now();
    // ~30k steps: the trainer reports every 100 ms, so an unthrottled run wrote a line for each
    const r = runCli(["train", "--acts", acts, "--tokens", "8000000", "--batch-size", "256", "--out", join(dir, "sae-progress")]);
    const seconds = (Date.now() - t0) / 1000;
    expect(r.status, r.stderr).toBe(0);
    const lines = progressLines(r.stderr);
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.length).toBeLessThanOrEqual(2 + Math.floor(seconds / 5));
    expect(lines.at(-1)).toMatch(/^train: 8000000\/8000000 tok \(\d+ tok\/s\) loss [\d.]+ {2}L0 [\d.]+ {2}dead [\d.]+%$/);
    expect(r.stdout).toMatch(/^sae\s+d_sae\s+l1 coef\s+mse\s+l0\s+dead %\s+folder$/m);
    expect(r.stdout).toMatch(/^31250 steps, 8000000 tokens in [\d.]+ s \(\d+ tok\/s\)$/m);
    // --json: no progress at all
    const j = runCli(["train", "--acts", acts, "--tokens", "2560", "--batch-size", "256", "--out", join(dir, "sae-json"), "--json"]);
    expect(j.status, j.stderr).toBe(0);
    expect(progressLines(j.stderr)).toEqual([]);
  });

  it("Ctrl-C: exit 130 naming the checkpoint; --resume finishes with run totals and this session's tokens", async () => {
    const acts = writeActs("b.safetensors", 2000);
    const out = join(dir, "sae-int");
    const args = ["train", "--acts", acts, "--expansion", "4", "--tokens", "10000000", "--batch-size", "256", "--out", out];
    const child = spawn(process.execPath, [join(repoRoot, "bin", "qsae.js"), ...args], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    let sent = false;
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
      if (!sent && progressLines(stderr).length > 0) {
        sent = true;
        child.kill("SIGINT");
      }
    });
    const code = await new Promise<number | null>((res) => child.on("close", (c) => res(c)));
    expect(sent, stderr).toBe(true);
    expect(code, stderr).toBe(130);
    const ckpt = `${out}.checkpoint.safetensors`;
    expect(existsSync(ckpt)).toBe(true);
    const last = stderr.trim().split("\n").at(-1);
    expect(last).toBe(`qsae: interrupted; checkpoint saved to ${ckpt} — rerun the same command with --resume to continue`);

    const r = runCli([...args, "--resume"]);
    expect(r.status, r.stderr).toBe(0);
    const m = r.stdout.match(/^(\d+) steps, (\d+) tokens; this session (\d+) tokens in [\d.]+ s \(\d+ tok\/s\), resumed at step (\d+)$/m);
    expect(m, r.stdout).not.toBeNull();
    const [steps, tokens, session, from] = m!.slice(1).map(Number);
    expect(steps).toBe(Math.ceil(10000000 / 256));
    expect(tokens).toBe(10000000); // exactly the budget: the last batch is partial
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThan(steps);
    expect(session).toBe(10000000 - from * 256);
    expect(existsSync(ckpt)).toBe(false);
    expect(existsSync(join(out, "sae_weights.safetensors"))).toBe(true);
  });
});
