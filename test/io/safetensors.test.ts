// safetensors from TypeScript: round trips, zero-copy loads, inspect of files and sharded folders, errors.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { inspectCheckpoint, loadSafetensors, saveSafetensors, Tensor } from "../../src/index.js";
import { haveShared, sharedPath, sharedSkipReason } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();

describe("safetensors round trip", () => {
  it("keeps dtype, shape and values of every array type", async () => {
    const f32 = Float32Array.from({ length: 12 }, (_, i) => Math.sin(i) * 3);
    const f64 = Float64Array.from([1.5, -2.25, Math.PI]);
    const i64 = BigInt64Array.from([1n, -2n, 9007199254740993n]);
    const i8 = Int8Array.from([-128, 0, 127]);
    const bf16 = Uint16Array.from([0x3f80, 0xc000, 0x4049]); // 1, -2, 3.14
    const tensors = {
      a: Tensor.from(f32, [3, 4]),
      b: Tensor.from(f64),
      c: Tensor.from(i64),
      d: Tensor.from(i8),
      e: Tensor.from(bf16, [3], "bf16"),
    };
    const path = join(dir, "rt.safetensors");
    await saveSafetensors(path, tensors, { source: "test" });
    const back = await loadSafetensors(path);
    expect(back.metadata).toEqual({ source: "test" });
    expect(back.tensors.a.shape).toEqual([3, 4]);
    expect(back.tensors.a.dtype).toBe("fp32");
    expect(Array.from(back.tensors.a.toTypedArray() as Float32Array)).toEqual(Array.from(f32));
    expect(Array.from(back.tensors.b.toTypedArray() as Float64Array)).toEqual(Array.from(f64));
    expect(Array.from(back.tensors.c.toTypedArray() as BigInt64Array)).toEqual(Array.from(i64));
    expect(Array.from(back.tensors.d.toTypedArray() as Int8Array)).toEqual([-128, 0, 127]);
    expect(back.tensors.e.dtype).toBe("bf16");
    expect(Array.from(back.tensors.e.toFloat64Array())).toEqual([1, -2, 3.140625]);
    // The data layout is the standard one: check the header by hand.
    const raw = readFileSync(path);
    const n = Number(raw.readBigUInt64LE(0));
    const header = JSON.parse(raw.subarray(8, 8 + n).toString("utf8"));
    expect(header.a).toEqual({ dtype: "F32", shape: [3, 4], data_offsets: [0, 48] });
    expect((8 + n) % 8).toBe(0);
  });

  it("dispose() is idempotent and later use throws DisposedError", () => {
    const t = Tensor.from(Float32Array.from([1, 2, 3]));
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.shape).toThrow(/disposed/);
  });

  it("rejects shapes that disagree with the data", () => {
    expect(() => Tensor.from(Float32Array.from([1, 2, 3]), [2, 2])).toThrow(RangeError);
  });

  it("writes atomically: a failed save leaves no file and no temp file", async () => {
    const path = join(dir, "missing-folder", "x.safetensors");
    await expect(saveSafetensors(path, { a: Tensor.from(Float32Array.from([1])) })).rejects.toThrow(/missing-folder/);
    expect(existsSync(path)).toBe(false);
  });
});

describe("inspect and load errors", () => {
  it("names the file and the problem", async () => {
    const bad = join(dir, "bad.safetensors");
    writeFileSync(bad, Buffer.from([1, 2, 3]));
    await expect(inspectCheckpoint(bad)).rejects.toThrow(`${bad}: not a safetensors file`);
    await expect(inspectCheckpoint(join(dir, "nope"))).rejects.toThrow(/no such file or folder/);
    await expect(inspectCheckpoint(dir)).rejects.toThrow(/no weights/);
  });
});

describe.skipIf(!haveShared)("shared fixtures", () => {
  it("inspects tiny-qwen3: 25 tensors with dtypes and shapes", async () => {
    const r = await inspectCheckpoint(sharedPath("models/tiny-qwen3/model.safetensors"));
    expect(r.tensors).toHaveLength(25);
    const embed = r.tensors.find((t) => t.name === "model.embed_tokens.weight");
    expect(embed).toMatchObject({ dtype: "BF16", shape: [256, 64] });
    expect(r.parameters).toBe(r.tensors.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0));
    expect(r.bytes).toBe(r.parameters * 2);
  });

  it("lists a sharded folder as one model", async () => {
    const r = await inspectCheckpoint(sharedPath("models/tiny-qwen3-tied-sharded"));
    expect(r.shards).toHaveLength(2);
    const index = JSON.parse(readFileSync(sharedPath("models/tiny-qwen3-tied-sharded/model.safetensors.index.json"), "utf8"));
    expect(r.tensors.map((t) => t.name).sort()).toEqual(Object.keys(index.weight_map).sort());
  });

  it("loads tensors zero-copy with the right values", async () => {
    const { tensors } = await loadSafetensors(sharedPath("models/tiny-gpt2"), ["transformer.wte.weight"]);
    const w = tensors["transformer.wte.weight"];
    expect(w.dtype).toBe("fp32");
    expect(w.shape.length).toBe(2);
    // Cross-check against the raw file bytes.
    const raw = readFileSync(sharedPath("models/tiny-gpt2/model.safetensors"));
    const n = Number(raw.readBigUInt64LE(0));
    const h = JSON.parse(raw.subarray(8, 8 + n).toString("utf8"));
    const [b] = h["transformer.wte.weight"].data_offsets;
    const first = raw.readFloatLE(8 + n + b);
    expect((w.toTypedArray() as Float32Array)[0]).toBe(first);
  });
});

if (!haveShared) it.skip(sharedSkipReason, () => {});
