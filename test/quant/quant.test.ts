// quant TS API: quantize/dequantize reproduce bitsandbytes' reference outputs, quantized linear layers
// against a float64 JS reference, option errors, disposal.
import { describe, expect, it } from "vitest";

import { loadSafetensors } from "../../src/io/safetensors.js";
import { dequantize, quantCpuKernel, quantize, quantizedLinear } from "../../src/quant/index.js";
import { Tensor } from "../../src/tensor.js";
import { haveShared, sharedPath, sharedSkipReason } from "../helpers/shared.js";
import { f32, readRaw } from "./raw.js";

const bnb = (f: string) => sharedPath("reference", "bnb", f);

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
}

describe.skipIf(!haveShared)("quant API vs bitsandbytes references", () => {
  if (!haveShared) console.warn(sharedSkipReason);

  for (const [fmt, bs] of [
    ["nf4", 64],
    ["nf4", 128],
    ["fp4", 64],
    ["fp4", 128],
  ] as const) {
    it(`${fmt} blocksize ${bs}: packed codes, absmax and dequantized values match byte for byte`, async () => {
      const input = await loadSafetensors(bnb("input.safetensors"));
      const ref = readRaw(bnb(`${fmt}-bs${bs}.safetensors`));
      for (const [name, t] of Object.entries(input.tensors)) {
        const q = await quantize(t, { format: fmt, blocksize: bs });
        expect(q.shape).toEqual(t.shape);
        const c = q.components();
        expect(Buffer.from(c.packed.toTypedArray().buffer)).toEqual(ref.tensors[name].bytes);
        expect(Buffer.from(c.absmax.toTypedArray().buffer)).toEqual(ref.tensors[`${name}.absmax`].bytes);
        const d = await dequantize(q);
        expect(d.shape).toEqual(t.shape);
        const got = d.toTypedArray() as Float32Array;
        const want = f32(ref.tensors[`${name}.dequant`]);
        // values equal (bitsandbytes writes +0 where a code decodes to -0 * absmax)
        expect(Array.from(got).every((v, i) => v === want[i])).toBe(true);
        q.dispose();
        q.dispose();
        expect(q.disposed).toBe(true);
      }
    });
  }

  it("int8: CB and SCB match byte for byte", async () => {
    const input = await loadSafetensors(bnb("input.safetensors"));
    const ref = readRaw(bnb("int8.safetensors"));
    for (const [name, t] of Object.entries(input.tensors)) {
      const prefix = name.replace(/\.weight$/, "");
      const q = await quantize(t, { format: "int8" });
      const c = q.components();
      expect(Buffer.from(c.CB.toTypedArray().buffer)).toEqual(ref.tensors[`${prefix}.weight`].bytes);
      expect(Buffer.from(c.SCB.toTypedArray().buffer)).toEqual(ref.tensors[`${prefix}.SCB`].bytes);
    }
  });
});

describe("quant API", () => {
  it("quantizedLinear (nf4, fp4, int8) matches x @ dequantize(W)^T + b computed in JS", async () => {
    const r = rng(7);
    const [N, K, M] = [24, 128, 3];
    const w = Tensor.from(Float32Array.from({ length: N * K }, r), [N, K]);
    const x = Tensor.from(Float32Array.from({ length: M * K }, () => 4 * r()), [M, K]);
    const b = Tensor.from(Float32Array.from({ length: N }, r), [N]);
    for (const format of ["nf4", "fp4", "int8"] as const) {
      const q = await quantize(w, { format, blocksize: 32, doubleQuant: format === "nf4" });
      const wd = (await dequantize(q)).toTypedArray() as Float32Array;
      const xs = x.toTypedArray() as Float32Array;
      const bs = b.toTypedArray() as Float32Array;
      for (const kernel of ["auto", "generic"] as const) {
        quantCpuKernel(kernel);
        const y = (await quantizedLinear(x, q, { bias: b, threshold: 0 })).toTypedArray() as Float32Array;
        let maxErr = 0;
        let maxRef = 0;
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let s = bs[n];
            for (let k = 0; k < K; k++) s += xs[m * K + k] * wd[n * K + k];
            maxErr = Math.max(maxErr, Math.abs(s - y[m * N + n]));
            maxRef = Math.max(maxRef, Math.abs(s));
          }
        }
        // 4-bit: exact up to fp32 rounding; int8 also quantizes the activations (about 1%).
        expect(maxErr / maxRef).toBeLessThan(format === "int8" ? 0.03 : 1e-5);
      }
      quantCpuKernel("auto");
      q.dispose();
    }
  });

  it("bad options and inputs fail with clear errors", async () => {
    const w = Tensor.from(new Float32Array(64), [2, 32]);
    await expect(quantize(w, { blocksize: 48 })).rejects.toThrow(/blocksize: 48 is not a power of two in 32\.\.4096/);
    await expect(quantize(w, { blocksize: 8192 })).rejects.toThrow(RangeError);
    // @ts-expect-error: checked at run time too
    await expect(quantize(w, { format: "int4" })).rejects.toThrow(/unknown quantization format 'int4'/);
    const ints = Tensor.from(new Int32Array(64), [2, 32]);
    await expect(quantize(ints, { format: "nf4" })).rejects.toThrow(/expected a floating tensor/);
    await expect(quantize(Tensor.from(new Float32Array(8), [8]), { format: "int8" })).rejects.toThrow(/2-D/);
    const q = await quantize(w, { format: "nf4", blocksize: 32 });
    await expect(quantizedLinear(Tensor.from(new Float32Array(31), [1, 31]), q)).rejects.toThrow(/expected \[\.\.\., 32\]/);
    q.dispose();
    expect(() => q.components()).toThrow(/disposed/);
  });
});
