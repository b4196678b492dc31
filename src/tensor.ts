// Tensor: a typed handle to a libtorch tensor held by the addon. Data stays native; toTypedArray()
// copies it out. dispose() frees it now (idempotent); otherwise the GC finalizer does.
import { DisposedError } from "./errors.js";
import { native } from "./native/addon.js";
import type { DTypeName, NativeTensor } from "./native/types.js";

export type { DTypeName } from "./native/types.js";

export type TypedArrayOf<D extends DTypeName> = D extends "fp64"
  ? Float64Array
  : D extends "fp32"
    ? Float32Array
    : D extends "int64"
      ? BigInt64Array
      : D extends "int32"
        ? Int32Array
        : D extends "int16"
          ? Int16Array
          : D extends "int8"
            ? Int8Array
            : Uint8Array | Uint16Array;

export type AnyTypedArray =
  | Float64Array
  | Float32Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint16Array;

const handles = new WeakMap<Tensor, NativeTensor>();

export class Tensor {
  private constructor(handle: NativeTensor) {
    handles.set(this, handle);
  }

  /** Wraps a native handle (internal: modules use it for results of native calls). */
  static fromNative(handle: NativeTensor): Tensor {
    return new Tensor(handle);
  }

  /**
   * A CPU tensor holding a copy of `data`. The dtype defaults from the array type (Float32Array → fp32,
   * Float64Array → fp64, BigInt64Array → int64, Int32Array → int32, Int16Array → int16, Int8Array → int8,
   * Uint8Array → uint8); fp16 and bf16 take their raw 16-bit patterns as a Uint16Array.
   */
  static from(data: AnyTypedArray, shape?: readonly number[], dtype?: DTypeName): Tensor {
    const dt = dtype ?? defaultDtype(data);
    const s = shape ? [...shape] : [data.length];
    const numel = s.reduce((a, b) => a * b, 1);
    if (numel !== data.length) {
      throw new RangeError(`shape [${s.join(", ")}] has ${numel} elements but the data has ${data.length}`);
    }
    const bytes = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
    return new Tensor(native().tensorFromBuffer(bytes, dt, s));
  }

  private get h(): NativeTensor {
    const h = handles.get(this);
    if (!h || h.disposed) throw new DisposedError("Tensor");
    return h;
  }

  get shape(): number[] {
    return this.h.shape;
  }
  get dtype(): DTypeName {
    return this.h.dtype;
  }
  get device(): string {
    return this.h.device;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get nbytes(): number {
    return this.h.nbytes;
  }
  get disposed(): boolean {
    const h = handles.get(this);
    return !h || h.disposed;
  }

  /** Copies the data out (moving it to the CPU first if needed). fp16/bf16 come as raw Uint16Array bits. */
  toTypedArray(): AnyTypedArray {
    const buf = this.h.toBuffer();
    switch (this.dtype) {
      case "fp64":
        return new Float64Array(buf);
      case "fp32":
        return new Float32Array(buf);
      case "int64":
        return new BigInt64Array(buf);
      case "int32":
        return new Int32Array(buf);
      case "int16":
        return new Int16Array(buf);
      case "int8":
        return new Int8Array(buf);
      case "fp16":
      case "bf16":
        return new Uint16Array(buf);
      default:
        return new Uint8Array(buf);
    }
  }

  /** Values as float64 numbers (any floating or integer dtype). */
  toFloat64Array(): Float64Array {
    if (this.dtype === "fp64") return this.toTypedArray() as Float64Array;
    const t = this.to("fp64");
    try {
      return t.toTypedArray() as Float64Array;
    } finally {
      t.dispose();
    }
  }

  /** A converted copy (dtype and/or device, e.g. "cuda:0"). */
  to(dtype?: DTypeName, device?: string): Tensor {
    return new Tensor(this.h.to(dtype, device));
  }

  /** Frees the native memory now. Safe to call twice. */
  dispose(): void {
    handles.get(this)?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return this.disposed ? "Tensor(disposed)" : `Tensor(${this.dtype}, [${this.shape.join(", ")}], ${this.device})`;
  }
}

/** The native handle of a tensor, for passing to native calls. Throws DisposedError after dispose(). */
export function nativeTensor(t: Tensor): NativeTensor {
  const h = handles.get(t);
  if (!h || h.disposed) throw new DisposedError("Tensor");
  return h;
}

function defaultDtype(data: AnyTypedArray): DTypeName {
  if (data instanceof Float32Array) return "fp32";
  if (data instanceof Float64Array) return "fp64";
  if (data instanceof BigInt64Array) return "int64";
  if (data instanceof Int32Array) return "int32";
  if (data instanceof Int16Array) return "int16";
  if (data instanceof Int8Array) return "int8";
  if (data instanceof Uint16Array) throw new TypeError("a Uint16Array needs an explicit dtype: fp16 or bf16");
  return "uint8";
}
