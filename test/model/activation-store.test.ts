// Activation stores from synthetic rows: shard layout, manifest, reader round trips (fp32 exact, bf16
// against a bit-level round-to-nearest-even reference, fp16 within half a unit), atomic publishing,
// plain .safetensors files, and errors that name the file at fault.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { saveSafetensors, Tensor } from "../../src/index.js";
import { ActivationStore, ActivationStoreWriter, actsName } from "../../src/model/activation-store.js";
import type { ActivationManifest } from "../../src/model/activation-store.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();

function random(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * 3;
  });
}

/** fp32 → bf16 bits, round to nearest even (what torch's conversion does). */
function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

const FIELDS: Omit<ActivationManifest, "dtype" | "d_model" | "n_tokens" | "shards" | "format" | "version"> = {
  qsae_version: "0.1.0",
  model: { path: "/m", architecture: "LlamaForCausalLM", config_hash: "c".repeat(64), weights_hash: "w".repeat(64) },
  precision: "nf4",
  compute_dtype: "fp32",
  quantization: { blocksize: 64, double_quant: false, int8_threshold: 6 },
  hooks: ["resid_post", "mlp_out"],
  layers: [0, 1],
  n_prompts: 4,
  prompts_hash: "p".repeat(64),
  skip_bos: true,
};
const NAMES = ["resid_post", "mlp_out"].flatMap((h) => [0, 1].map((l) => actsName(h, l)));
const D = 6;

/** Writes 13 rows in chunks of 3, 7 and 3 into shards of 5 rows. */
async function writeStore(out: string, dtype: "fp32" | "bf16" | "fp16", overwrite = false) {
  const w = await ActivationStoreWriter.create(out, { names: NAMES, d: D, dtype, shardRows: 5, overwrite });
  const acts = Object.fromEntries(NAMES.map((n, i) => [n, random(13 * D, i + 1)]));
  const tokens = Array.from({ length: 13 }, (_, i) => 1000 + i);
  const doc = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3];
  const pos = [1, 2, 3, 1, 2, 3, 4, 5, 6, 7, 1, 2, 3];
  let off = 0;
  for (const n of [3, 7, 3]) {
    const part = Object.fromEntries(NAMES.map((k) => [k, acts[k].subarray(off * D, (off + n) * D)]));
    await w.appendRows(part, tokens.slice(off, off + n), doc.slice(off, off + n), pos.slice(off, off + n));
    off += n;
    if (!overwrite) expect(existsSync(out)).toBe(false); // nothing at OUT until finish()
  }
  expect(existsSync(w.tmp)).toBe(true);
  const manifest = await w.finish(FIELDS);
  expect(existsSync(w.tmp)).toBe(false);
  return { manifest, acts, tokens, doc, pos };
}

describe("activation store writer and reader", () => {
  it("writes shards of shardRows rows and a manifest in the contract's format", async () => {
    const out = join(dir, "fp32");
    const { manifest, acts, tokens, doc, pos } = await writeStore(out, "fp32");
    expect(readdirSync(out).sort()).toEqual(["manifest.json", "shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"]);
    const onDisk = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
    expect(onDisk).toEqual(manifest);
    expect(onDisk).toMatchObject({
      format: "qsae-activations",
      version: 1,
      hooks: ["resid_post", "mlp_out"],
      layers: [0, 1],
      d_model: D,
      dtype: "fp32",
      n_tokens: 13,
      shards: [
        { file: "shard-00000.safetensors", rows: 5 },
        { file: "shard-00001.safetensors", rows: 5 },
        { file: "shard-00002.safetensors", rows: 3 },
      ],
    });
    const store = await ActivationStore.open(out);
    expect(store.nRows).toBe(13);
    expect(store.names).toEqual(NAMES);
    expect(store.shards.map((s) => s.start)).toEqual([0, 5, 10]);
    for (const n of NAMES) {
      const [, hook, layer] = n.split(".");
      const t = await store.read(hook, Number(layer));
      expect(t.shape).toEqual([13, D]);
      expect(t.toTypedArray()).toEqual(acts[n]);
      t.dispose();
    }
    expect([...(await store.tokens())].map(Number)).toEqual(tokens);
    expect([...(await store.docs())]).toEqual(doc);
    expect([...(await store.positions())]).toEqual(pos);
    const shard = await store.readShard(1);
    expect(Object.keys(shard).sort()).toEqual([...NAMES, "doc", "pos", "tokens"].sort());
    expect(shard.tokens.dtype).toBe("int64");
    expect(shard.doc.dtype).toBe("int32");
    expect(shard.pos.dtype).toBe("int32");
    for (const t of Object.values(shard)) t.dispose();
  });

  it("stores bf16 rounded to nearest even and fp16 within half a unit", async () => {
    const { acts } = await writeStore(join(dir, "bf16"), "bf16");
    const b = await ActivationStore.open(join(dir, "bf16"));
    expect(b.manifest.dtype).toBe("bf16");
    const t = await b.read("mlp_out", 1);
    expect(t.dtype).toBe("bf16");
    expect([...(t.toTypedArray() as Uint16Array)]).toEqual([...acts[actsName("mlp_out", 1)]].map(bf16Bits));
    const f = await b.read("mlp_out", 1, { dtype: "fp32" });
    expect(f.dtype).toBe("fp32");
    t.dispose();
    f.dispose();

    const h = await writeStore(join(dir, "fp16"), "fp16");
    const s = await ActivationStore.open(join(dir, "fp16"));
    const x = await s.read("resid_post", 0, { dtype: "fp32" });
    const got = x.toTypedArray() as Float32Array;
    const want = h.acts[actsName("resid_post", 0)];
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(Math.abs(want[i]) * 2 ** -11 + 1e-7);
    x.dispose();
  });

  it("publishes atomically: abort leaves nothing, an existing store needs overwrite", async () => {
    const out = join(dir, "atomic");
    const w = await ActivationStoreWriter.create(out, { names: ["acts.resid_post.0"], d: 2, shardRows: 1 });
    await w.appendRows({ "acts.resid_post.0": new Float32Array([1, 2, 3, 4]) }, [1, 2], [0, 0], [0, 1]);
    expect(readdirSync(w.tmp)).toHaveLength(2);
    await w.abort();
    expect(existsSync(w.tmp)).toBe(false);
    expect(existsSync(out)).toBe(false);

    await writeStore(out, "fp32");
    await expect(ActivationStoreWriter.create(out, { names: NAMES, d: D, shardRows: 5 })).rejects.toThrow(/atomic: already exists/);
    const before = readFileSync(join(out, "manifest.json"), "utf8");
    await writeStore(out, "bf16", true);
    expect(readFileSync(join(out, "manifest.json"), "utf8")).not.toBe(before);
    expect((await ActivationStore.open(out)).manifest.dtype).toBe("bf16");
    expect(readdirSync(dir).filter((f) => f.startsWith("atomic."))).toEqual([]);
  });

  it("rejects bad rows and options, naming them", async () => {
    await expect(ActivationStoreWriter.create(join(dir, "x"), { names: NAMES, d: D, shardRows: 0 })).rejects.toThrow(/shardRows/);
    await expect(ActivationStoreWriter.create(join(dir, "nofolder", "x"), { names: NAMES, d: D, shardRows: 4 })).rejects.toThrow(
      /nofolder: no such folder/,
    );
    const w = await ActivationStoreWriter.create(join(dir, "rows"), { names: ["acts.a.0"], d: 3, shardRows: 4 });
    await expect(w.appendRows({ "acts.a.0": new Float32Array(5) }, [1, 2], [0, 0], [0, 1])).rejects.toThrow(/acts\.a\.0: expected 2×3 values, got 5/);
    await expect(w.appendRows({}, [1], [0], [0])).rejects.toThrow(/acts\.a\.0/);
    await w.abort();
  });
});

describe("ActivationStore.open errors and plain files", () => {
  it("opens a plain .safetensors file with acts [N, D] as a one-shard store", async () => {
    const file = join(dir, "plain.safetensors");
    const a = random(4 * 3, 7);
    await saveSafetensors(file, { acts: Tensor.from(a, [4, 3]), doc: Tensor.from(new Int32Array([0, 0, 1, 1])) });
    const s = await ActivationStore.open(file);
    expect(s.plain).toBe(true);
    expect(s.names).toEqual(["acts"]);
    expect(s.nRows).toBe(4);
    expect(s.dModel).toBe(3);
    expect((await s.read()).toTypedArray()).toEqual(a);
    expect([...(await s.docs())]).toEqual([0, 0, 1, 1]);
    await expect(s.tokens()).rejects.toThrow(/tokens: missing from .*plain\.safetensors/);
    await saveSafetensors(join(dir, "noacts.safetensors"), { x: Tensor.from(a, [4, 3]) });
    await expect(ActivationStore.open(join(dir, "noacts.safetensors"))).rejects.toThrow(/noacts\.safetensors: a plain activation file needs a tensor 'acts'/);
  });

  it("names the manifest field, shard or tensor at fault", async () => {
    const out = join(dir, "broken");
    await writeStore(out, "fp32");
    const mf = join(out, "manifest.json");
    const good = JSON.parse(readFileSync(mf, "utf8"));
    await expect(ActivationStore.open(join(dir, "missing"))).rejects.toThrow(/missing: no such activation store/);
    writeFileSync(mf, JSON.stringify({ ...good, shards: [...good.shards, { file: "shard-00009.safetensors", rows: 1 }] }));
    await expect(ActivationStore.open(out)).rejects.toThrow(/shard-00009\.safetensors: missing \(listed in manifest\.json\)/);
    writeFileSync(mf, JSON.stringify({ ...good, d_model: 7 }));
    await expect(ActivationStore.open(out)).rejects.toThrow(/shard-00000\.safetensors: 'acts\.resid_post\.0' is F32 \[5, 6\], the manifest says F32 \[5, 7\]/);
    writeFileSync(mf, JSON.stringify({ ...good, n_tokens: 12 }));
    await expect(ActivationStore.open(out)).rejects.toThrow(/shards hold 13 rows but n_tokens is 12/);
    writeFileSync(mf, JSON.stringify({ ...good, dtype: "int4" }));
    await expect(ActivationStore.open(out)).rejects.toThrow(/manifest\.json: dtype:/);
    writeFileSync(mf, "{");
    await expect(ActivationStore.open(out)).rejects.toThrow(/manifest\.json: invalid JSON/);
    writeFileSync(mf, JSON.stringify(good));
    const s = await ActivationStore.open(out);
    expect(() => s.name("attn_out", 0)).toThrow(/no activations acts\.attn_out\.0/);
    expect(() => s.name()).toThrow(/holds 4 activations/);
    await expect(s.read("resid_post", 0, { maxBytes: 100 })).rejects.toThrow(/above maxBytes 100/);
  });
});
