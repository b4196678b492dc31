// qsae's public API.
export { VERSION, info, setThreads, manualSeed } from "./runtime.js";
export type { RuntimeInfo } from "./runtime.js";
export { Tensor } from "./tensor.js";
export type { DTypeName, AnyTypedArray } from "./tensor.js";
export { DisposedError, InputError } from "./errors.js";
export { inspectCheckpoint, loadSafetensors, saveSafetensors } from "./io/safetensors.js";
export type { CheckpointSummary, TensorEntry, LoadedSafetensors } from "./io/safetensors.js";
export { AbortToken } from "./native/cancel.js";
