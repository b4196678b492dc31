// A minimal, independent safetensors reader for the quant tests (header JSON + raw bytes per tensor).
import { readFileSync } from "node:fs";

export interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

export function readRaw(path: string): { tensors: Record<string, RawTensor>; metadata: Record<string, string> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, unknown>;
  const data = buf.subarray(8 + n);
  const tensors: Record<string, RawTensor> = {};
  let metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === "__metadata__") {
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    tensors[k] = { dtype: e.dtype, shape: e.shape, bytes: Buffer.from(data.subarray(e.data_offsets[0], e.data_offsets[1])) };
  }
  return { tensors, metadata };
}

export function f32(t: RawTensor): Float32Array {
  return new Float32Array(t.bytes.buffer.slice(t.bytes.byteOffset, t.bytes.byteOffset + t.bytes.byteLength));
}
