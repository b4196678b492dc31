// safetensors files and HF checkpoints from TypeScript: inspect headers, load tensors, save atomically.
import { withCallSite } from "../errors.js";
import { native } from "../native/addon.js";
import { nativeTensor, Tensor } from "../tensor.js";

export interface TensorEntry {
  name: string;
  /** safetensors dtype: F32, BF16, F16, I8, U8, ... */
  dtype: string;
  shape: number[];
  bytes: number;
  /** the file (shard) holding it */
  file: string;
}

export interface CheckpointSummary {
  path: string;
  shards: string[];
  tensors: TensorEntry[];
  metadata: Record<string, string>;
  /** total number of elements over all tensors */
  parameters: number;
  /** total bytes of tensor data */
  bytes: number;
}

/**
 * Reads the headers of a `.safetensors` file, a `model.safetensors.index.json`, or an HF model folder
 * (single file or shards) without reading tensor data. Tensors come sorted by name.
 */
export async function inspectCheckpoint(path: string): Promise<CheckpointSummary> {
  const r = await withCallSite(native().inspectCheckpoint(path));
  let parameters = 0;
  let bytes = 0;
  for (const t of r.tensors) {
    parameters += t.shape.reduce((a, b) => a * b, 1);
    bytes += t.bytes;
  }
  return { ...r, parameters, bytes };
}

export interface LoadedSafetensors {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

/**
 * Loads tensors (all, or `names`) from a file or model folder. Tensors view the memory-mapped file
 * (no copy); writing to them never changes the file.
 */
export async function loadSafetensors(path: string, names?: string[]): Promise<LoadedSafetensors> {
  const r = await withCallSite(native().loadSafetensors(path, names));
  const tensors: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(r.tensors)) tensors[k] = Tensor.fromNative(v);
  return { tensors, metadata: r.metadata };
}

/** Writes tensors atomically (temp file + rename): a failed or killed write leaves nothing at `path`. */
export async function saveSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const handles = Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, nativeTensor(t)]));
  await withCallSite(native().saveSafetensors(path, handles, metadata));
}
