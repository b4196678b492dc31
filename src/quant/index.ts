// Quantization in bitsandbytes' formats: NF4/FP4 blockwise 4-bit (optional double quantization) and LLM.int8,
// bit-compatible with bitsandbytes; quantized linear layers (CPU: AVX2 fused kernels; CUDA kernels on GPU);
// and whole-checkpoint quantization into the HF + bitsandbytes safetensors layout.
import { InputError, withCallSite } from "../errors.js";
import { native } from "../native/addon.js";
import { runJob, type JobOptions } from "../native/cancel.js";
import type { DTypeName, Native4bit, NativeInt8, NativeQuantizeReport, NativeTensor } from "../native/types.js";
import { nativeTensor, Tensor } from "../tensor.js";

export type QuantFormat = "nf4" | "fp4" | "int8";

export interface QuantizeOptions {
  /** default "nf4" */
  format?: QuantFormat;
  /** 4-bit block size: a power of two in 32..4096 (default 64) */
  blocksize?: number;
  /** 4-bit: quantize the absmax statistics too (8-bit, blocksize 256), as bitsandbytes' compress_statistics */
  doubleQuant?: boolean;
}

const state = new WeakMap<QuantizedTensor, Native4bit | NativeInt8>();

function handlesOf(n: Native4bit | NativeInt8): NativeTensor[] {
  if (n.format === "int8") return [n.CB, n.SCB];
  return [n.packed, n.absmax, n.quantAbsmax, n.nestedAbsmax, n.nestedQuantMap].filter((t): t is NativeTensor => !!t);
}

/** A quantized tensor (native data). dispose() frees it now (idempotent); otherwise the GC does. */
export class QuantizedTensor {
  readonly format: QuantFormat;
  /** shape of the original tensor */
  readonly shape: number[];
  /** dtype of the original tensor (int8 weights: fp32) */
  readonly dtype: DTypeName;
  /** 4-bit block size (int8: 0) */
  readonly blocksize: number;
  readonly doubleQuant: boolean;

  private constructor(n: Native4bit | NativeInt8) {
    state.set(this, n);
    this.format = n.format;
    if (n.format === "int8") {
      this.shape = n.CB.shape;
      this.dtype = "fp32";
      this.blocksize = 0;
      this.doubleQuant = false;
    } else {
      this.shape = [...n.shape];
      this.dtype = n.dtype;
      this.blocksize = n.blocksize;
      this.doubleQuant = n.doubleQuant;
    }
  }

  /** @internal */
  static fromNative(n: Native4bit | NativeInt8): QuantizedTensor {
    return new QuantizedTensor(n);
  }

  /** @internal the native object, for native calls */
  native(): Native4bit | NativeInt8 {
    const n = state.get(this);
    if (!n || handlesOf(n).some((h) => h.disposed)) throw new InputError("QuantizedTensor was disposed");
    return n;
  }

  /**
   * The tensors as stored in an HF + bitsandbytes safetensors file for weight `name` (e.g. "x.weight"):
   * 4-bit: name (U8 packed), name.absmax, [name.nested_absmax, name.nested_quant_map] ; int8: PREFIX.weight
   * (I8) and PREFIX.SCB. Copies of the data; the caller owns them. (quant_map and quant_state are written by
   * quantizeCheckpoint.)
   */
  components(): Record<string, Tensor> {
    const n = this.native();
    if (n.format === "int8") return { CB: Tensor.fromNative(n.CB.to()), SCB: Tensor.fromNative(n.SCB.to()) };
    const out: Record<string, Tensor> = {
      packed: Tensor.fromNative(n.packed.to()),
      absmax: Tensor.fromNative((n.doubleQuant && n.quantAbsmax ? n.quantAbsmax : n.absmax).to()),
    };
    if (n.doubleQuant && n.nestedAbsmax && n.nestedQuantMap) {
      out.nestedAbsmax = Tensor.fromNative(n.nestedAbsmax.to());
      out.nestedQuantMap = Tensor.fromNative(n.nestedQuantMap.to());
    }
    return out;
  }

  /** Bytes held natively. */
  get nbytes(): number {
    return handlesOf(this.native()).reduce((a, h) => a + h.nbytes, 0);
  }

  get disposed(): boolean {
    const n = state.get(this);
    return !n || handlesOf(n).some((h) => h.disposed);
  }

  dispose(): void {
    const n = state.get(this);
    if (n) for (const h of handlesOf(n)) h.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function checkOptions(o: QuantizeOptions): Required<QuantizeOptions> {
  const format = o.format ?? "nf4";
  if (format !== "nf4" && format !== "fp4" && format !== "int8") {
    throw new TypeError(`format: unknown quantization format '${String(format)}' (expected nf4, fp4 or int8)`);
  }
  const blocksize = o.blocksize ?? 64;
  if (!Number.isInteger(blocksize) || blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) !== 0) {
    throw new RangeError(`blocksize: ${blocksize} is not a power of two in 32..4096`);
  }
  return { format, blocksize, doubleQuant: o.doubleQuant ?? false };
}

/**
 * Quantizes a floating tensor (fp32, bf16, fp16). 4-bit formats flatten it row-major (any shape); int8 needs a
 * 2-D weight [out, in] (row-wise scales).
 */
export async function quantize(t: Tensor, opts: QuantizeOptions = {}): Promise<QuantizedTensor> {
  const o = checkOptions(opts);
  if (o.format === "int8") return QuantizedTensor.fromNative(await withCallSite(native().quantizeInt8(nativeTensor(t))));
  const n = await withCallSite(
    native().quantize4(nativeTensor(t), { format: o.format, blocksize: o.blocksize, doubleQuant: o.doubleQuant }),
  );
  return QuantizedTensor.fromNative(n);
}

/** Dequantizes to `dtype` (default fp32), in the original shape. */
export async function dequantize(q: QuantizedTensor, dtype: DTypeName = "fp32"): Promise<Tensor> {
  const n = q.native();
  const r = n.format === "int8" ? native().dequantizeInt8(n, dtype) : native().dequantize4(n, dtype);
  return Tensor.fromNative(await withCallSite(r));
}

export interface QuantizedLinearOptions {
  bias?: Tensor;
  /** LLM.int8 outlier threshold (default 6.0; 0 disables the decomposition) */
  threshold?: number;
  /** compute/result dtype (default fp32; CPU computes in fp32) */
  compute?: "fp32" | "bf16" | "fp16";
}

/** y = x @ W^T + bias for a quantized weight W [out, in]; x [..., in]. */
export async function quantizedLinear(x: Tensor, w: QuantizedTensor, o: QuantizedLinearOptions = {}): Promise<Tensor> {
  const n = w.native();
  const bias = o.bias ? nativeTensor(o.bias) : null;
  const r =
    n.format === "int8"
      ? native().linearInt8(nativeTensor(x), n, bias, o.threshold ?? 6.0, o.compute ?? "fp32")
      : native().linear4bit(nativeTensor(x), n, bias, o.compute ?? "fp32");
  return Tensor.fromNative(await withCallSite(r));
}

export interface QuantizeCheckpointOptions extends QuantizeOptions, JobOptions {
  /** recorded as llm_int8_threshold in quantization_config (default 6.0) */
  threshold?: number;
}

export type QuantizeCheckpointReport = NativeQuantizeReport;

/**
 * Quantizes a `.safetensors` file (every floating tensor of >= 2 dims named *.weight) or an HF model folder
 * (block projections only; embeddings, norms, lm_head and MoE routers kept; config.json gains
 * quantization_config; tokenizer files copied) into the HF + bitsandbytes layout. The output appears atomically.
 */
export async function quantizeCheckpoint(
  input: string,
  output: string,
  opts: QuantizeCheckpointOptions = {},
): Promise<QuantizeCheckpointReport> {
  const o = checkOptions(opts);
  const threshold = opts.threshold ?? 6.0;
  if (!(threshold >= 0)) throw new RangeError(`threshold: must be >= 0, got ${threshold}`);
  return runJob(opts, (j) =>
    native().quantizeCheckpoint(input, output, {
      format: o.format,
      blocksize: o.blocksize,
      doubleQuant: o.doubleQuant,
      threshold,
      ...j,
    }),
  );
}

/** The CPU kernel in use ("avx2" or "generic"); `which` selects first ("auto" or "generic", for comparisons). */
export function quantCpuKernel(which?: "auto" | "generic"): string {
  return native().quantCpuKernel(which);
}
