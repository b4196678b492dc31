// Model runtime from TypeScript: reference parity through the public API, KV-cache decoding equal to a
// full forward, a left-padded batch equal to each sequence alone, activation capture, errors, dispose,
// and the forward / inspect-model commands.
import { copyFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { loadSafetensors, saveSafetensors, Tensor } from "../../src/index.js";
import { Model, planModel } from "../../src/model/model.js";
import { runCli } from "../helpers/cli.js";
import { haveShared, sharedPath, sharedSkipReason } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();

function maxRelErr(got: Tensor, ref: Tensor): number {
  const a = got.toFloat64Array();
  const b = ref.toFloat64Array();
  expect(a.length).toBe(b.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

/** Rows [b, t0..t1) of a [B,T,X] tensor as plain numbers. */
function slice3(t: Tensor, b: number, t0: number, t1: number): number[] {
  const [, T, X] = t.shape;
  const a = t.toFloat64Array();
  return Array.from(a.subarray((b * T + t0) * X, (b * T + t1) * X));
}

function ids(rows: number[][]): Tensor {
  return Tensor.from(BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);
}

function close(a: number[], b: number[], tol: number): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  expect(d / m).toBeLessThanOrEqual(tol);
  return d / m;
}

describe.skipIf(!haveShared)(`model runtime (${haveShared ? "fixtures" : sharedSkipReason})`, () => {
  it("fp32 forward matches the reference (logits and every hidden state) for qwen3 and starcoder2", async () => {
    for (const name of ["tiny-qwen3", "tiny-starcoder2"]) {
      const ref = await loadSafetensors(sharedPath("reference", `${name}.fp32.safetensors`));
      const m = await Model.load(sharedPath("models", name), { precision: "fp32" });
      expect(m.info.precision).toBe("fp32");
      const r = await m.forward(ref.tensors.input_ids, { hidden: true });
      expect(maxRelErr(r.logits, ref.tensors.logits)).toBeLessThanOrEqual(1e-4);
      expect(r.hidden?.length).toBe(m.info.numLayers);
      r.hidden?.forEach((h, i) => expect(maxRelErr(h, ref.tensors[`hidden.${i}`])).toBeLessThanOrEqual(1e-4));
      m.dispose();
      m.dispose(); // idempotent
      expect(m.disposed).toBe(true);
      await expect(m.forward(ref.tensors.input_ids)).rejects.toThrow(/disposed/);
    }
  });

  it("reports its info, hashes and per-module precision", async () => {
    const progress: number[] = [];
    const m = await Model.load(sharedPath("models", "tiny-qwen3-tied-sharded"), { onProgress: (p) => progress.push(p.done) });
    expect(m.info.architecture).toBe("Qwen3ForCausalLM");
    expect(m.info.precision).toBe("bf16"); // the checkpoint's dtype
    expect(m.info.quantization).toBeNull();
    expect(m.info.configHash).toMatch(/^[0-9a-f]{64}$/);
    expect(m.info.weightsHash).toMatch(/^[0-9a-f]{64}$/);
    const mods = m.modules();
    expect(mods.find((x) => x.name === "model.layers.0.self_attn.q_proj")?.precision).toBe("bf16");
    expect(mods.some((x) => x.name.startsWith("lm_head (tied"))).toBe(true);
    const plan = await planModel(sharedPath("models", "tiny-qwen3-tied-sharded"));
    expect(plan.totalBytes).toBe(mods.reduce((a, x) => a + x.bytes, 0));
    m.dispose();
  });

  it("reports the quantization settings it holds", async () => {
    const nf4 = await Model.load(sharedPath("models", "tiny-qwen3"), { precision: "nf4", blocksize: 128, doubleQuant: true });
    expect(nf4.info.quantization).toEqual({ type: "nf4", blocksize: 128, doubleQuant: true, prequantized: false });
    nf4.dispose();
    const i8 = await Model.load(sharedPath("models", "tiny-qwen3"), { precision: "int8", int8Threshold: 4 });
    expect(i8.info.quantization).toEqual({ type: "int8", int8Threshold: 4, prequantized: false });
    i8.dispose();
  });

  it("a device map splits the layers over devices with the same outputs", async () => {
    const ref = await loadSafetensors(sharedPath("reference", "tiny-qwen3.fp32.safetensors"));
    const one = await Model.load(sharedPath("models", "tiny-qwen3"), { precision: "fp32" });
    const two = await Model.load(sharedPath("models", "tiny-qwen3"), { precision: "fp32", devices: ["cpu", "cpu:0"] });
    expect(two.info.devices).toEqual(["cpu", "cpu:0"]);
    expect(two.info.layerDevices).toEqual(["cpu", "cpu:0"]);
    expect(one.info.devices).toEqual(["cpu"]);
    const a = await one.forward(ref.tensors.input_ids);
    const b = await two.forward(ref.tensors.input_ids);
    expect(maxRelErr(b.logits!, a.logits!)).toBe(0);
    one.dispose();
    two.dispose();
  });

  it("KV-cache decoding equals a full forward (gqa, sliding window)", async () => {
    for (const name of ["tiny-llama3", "tiny-starcoder2"]) {
      const m = await Model.load(sharedPath("models", name), { precision: "fp32" });
      const seq = [[5, 17, 200, 3, 99, 42, 7, 8, 150, 1]];
      const full = await m.forward(ids(seq));
      const cache = m.createCache();
      const pre = await m.forward(ids([seq[0].slice(0, 4)]), { cache });
      expect(cache.length).toBe(4);
      close(slice3(pre.logits, 0, 0, 4), slice3(full.logits, 0, 0, 4), 1e-5);
      for (let t = 4; t < seq[0].length; t++) {
        const step = await m.forward(ids([[seq[0][t]]]), { cache, lastOnly: true });
        close(slice3(step.logits, 0, 0, 1), slice3(full.logits, 0, t, t + 1), 1e-5);
      }
      expect(cache.length).toBe(seq[0].length);
      cache.dispose();
      cache.dispose();
      m.dispose();
    }
  });

  it("a left-padded batch equals each sequence alone, with and without a cache", async () => {
    const m = await Model.load(sharedPath("models", "tiny-qwen3-moe"), { precision: "fp32" });
    const a = [11, 22, 33, 44, 55, 66];
    const b = [7, 8, 9];
    const batch = ids([a, [0, 0, 0, ...b]]);
    const mask = ids([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]]);
    const r = await m.forward(batch, { attentionMask: mask, hidden: true });
    const ra = await m.forward(ids([a]));
    const rb = await m.forward(ids([b]));
    close(slice3(r.logits, 0, 0, 6), slice3(ra.logits, 0, 0, 6), 1e-5);
    close(slice3(r.logits, 1, 3, 6), slice3(rb.logits, 0, 0, 3), 1e-5);
    // Decode one more token for both through a cache.
    const cache = m.createCache();
    await m.forward(batch, { attentionMask: mask, cache });
    const step = await m.forward(ids([[77], [77]]), { cache, attentionMask: ids([[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]]) });
    const rb2 = await m.forward(ids([[...b, 77]]));
    close(slice3(step.logits, 1, 0, 1), slice3(rb2.logits, 0, 3, 4), 1e-5);
    m.dispose();
  });

  it("captures resid_pre / resid_post / attn_out / mlp_out consistent with the hidden states", async () => {
    const m = await Model.load(sharedPath("models", "tiny-mistral"), { precision: "fp32" });
    const x = ids([[1, 2, 3, 4, 5]]);
    const r = await m.forward(x, { hidden: true, capture: { hooks: ["resid_pre", "resid_post", "attn_out", "mlp_out"], layers: [1] } });
    const c = r.captures ?? {};
    expect(Object.keys(c).sort()).toEqual(["attn_out.1", "mlp_out.1", "resid_post.1", "resid_pre.1"]);
    close(slice3(c["resid_post.1"], 0, 0, 5), slice3(r.hidden![1], 0, 0, 5), 0);
    close(slice3(c["resid_pre.1"], 0, 0, 5), slice3(r.hidden![0], 0, 0, 5), 0);
    const pre = slice3(c["resid_pre.1"], 0, 0, 5);
    const att = slice3(c["attn_out.1"], 0, 0, 5);
    const mlp = slice3(c["mlp_out.1"], 0, 0, 5);
    close(pre.map((v, i) => v + att[i] + mlp[i]), slice3(c["resid_post.1"], 0, 0, 5), 1e-6);
    // Capture only: no logits, stops after the last captured layer.
    const onlyCap = await m.forward(x, { capture: { hooks: ["resid_post"], layers: [0] }, logits: false });
    expect(onlyCap.logits).toBeUndefined();
    close(slice3(onlyCap.captures!["resid_post.0"], 0, 0, 5), slice3(r.hidden![0], 0, 0, 5), 0);
    m.dispose();
  });

  it("bad input: one line naming the file, tensor or option", async () => {
    const base = sharedPath("models", "tiny-qwen3");
    const make = (name: string, edit: (cfg: Record<string, unknown>) => void) => {
      const d = join(dir, name);
      mkdirSync(d, { recursive: true });
      const cfg = JSON.parse(readFileSync(join(base, "config.json"), "utf8"));
      edit(cfg);
      writeFileSync(join(d, "config.json"), JSON.stringify(cfg));
      copyFileSync(join(base, "model.safetensors"), join(d, "model.safetensors"));
      return d;
    };
    await expect(Model.load(join(dir, "nope"))).rejects.toThrow(/nope: no such model folder/);
    await expect(Model.load(make("unknown", (c) => (c.model_type = "mamba")))).rejects.toThrow(/config\.json: unknown architecture 'mamba'/);
    await expect(Model.load(make("shape", (c) => (c.intermediate_size = 100)))).rejects.toThrow(
      /model\.layers\.0\.mlp\.gate_proj\.weight: shape \[128, 64\] in model\.safetensors disagrees with config\.json \(expected \[100, 64\]\)/,
    );
    await expect(Model.load(make("layers", (c) => (c.num_hidden_layers = 3)))).rejects.toThrow(
      /model\.layers\.2\.input_layernorm\.weight: missing from model\.safetensors/,
    );
    const noWeights = join(dir, "noweights");
    mkdirSync(noWeights);
    copyFileSync(join(base, "config.json"), join(noWeights, "config.json"));
    await expect(Model.load(noWeights)).rejects.toThrow(/no weights/);
    await expect(Model.load(base, { precision: "fp8" as never })).rejects.toThrow(/unknown precision 'fp8'/);
    // A sharded checkpoint: a tensor missing from the shard the index names, then missing from the index too.
    const sh = join(dir, "sharded");
    cpSync(sharedPath("models", "tiny-qwen3-tied-sharded"), sh, { recursive: true });
    const idx = JSON.parse(readFileSync(join(sh, "model.safetensors.index.json"), "utf8"));
    const victim = "model.layers.1.self_attn.q_proj.weight";
    const shard = idx.weight_map[victim] as string;
    const loaded = await loadSafetensors(join(sh, shard));
    delete loaded.tensors[victim];
    await saveSafetensors(join(sh, shard), loaded.tensors);
    const re = (s: string) => new RegExp(s.replace(/\./g, "\\."));
    await expect(Model.load(sh)).rejects.toThrow(re(`${victim}: missing from ${sh}/${shard}`));
    delete idx.weight_map[victim];
    writeFileSync(join(sh, "model.safetensors.index.json"), JSON.stringify(idx));
    await expect(Model.load(sh)).rejects.toThrow(re(`${victim}: missing from model.safetensors.index.json`));
    const m = await Model.load(base, { precision: "fp32" });
    await expect(m.forward(ids([[1, 300]]))).rejects.toThrow(/token id 300 out of range/);
    await expect(m.forward(ids([[1, 2]]), { capture: { hooks: ["resid_post"], layers: [5] } })).rejects.toThrow(/layer 5 out of range/);
    m.dispose();
  });

  it("is cancellable while loading", async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(Model.load(sharedPath("models", "tiny-qwen3"), { signal: ac.signal })).rejects.toThrow(/abort/i);
  });

  it("qsae forward writes logits and hidden states matching the reference; inspect-model lists modules", async () => {
    const out = join(dir, "fwd.safetensors");
    const r = runCli(["forward", sharedPath("models", "tiny-qwen2"), "--precision", "fp32", "--input-ids", sharedPath("reference", "tiny-qwen2.fp32.safetensors"), "--out", out]);
    expect(r.stderr).toMatch(/wrote/);
    expect(r.status).toBe(0);
    const got = await loadSafetensors(out);
    const ref = await loadSafetensors(sharedPath("reference", "tiny-qwen2.fp32.safetensors"));
    expect(got.tensors.logits.dtype).toBe("fp32");
    expect(maxRelErr(got.tensors.logits, ref.tensors.logits)).toBeLessThanOrEqual(1e-4);
    expect(maxRelErr(got.tensors["hidden.1"], ref.tensors["hidden.1"])).toBeLessThanOrEqual(1e-4);
    const bad = runCli(["forward", join(dir, "missing-model"), "--input-ids", out, "--out", join(dir, "x.safetensors")]);
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    const insp = runCli(["inspect-model", sharedPath("models", "tiny-qwen3-moe"), "--precision", "bf16", "--json"]);
    expect(insp.status).toBe(0);
    const j = JSON.parse(insp.stdout);
    expect(j.precision).toBe("bf16");
    expect(j.modules.find((x: { name: string }) => x.name === "model.layers.1.mlp.experts.3.down_proj")).toEqual({
      name: "model.layers.1.mlp.experts.3.down_proj",
      precision: "bf16",
      bytes: 64 * 32 * 2,
    });
    expect(j.modules.find((x: { name: string }) => x.name === "model.layers.0.mlp.gate").precision).toBe("bf16");
  });
});
