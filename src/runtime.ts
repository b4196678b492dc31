// Runtime facts and settings: versions, BLAS, threads, CUDA devices.
import { native } from "./native/addon.js";
import type { NativeInfo } from "./native/types.js";
import { VERSION } from "./version.js";

export type RuntimeInfo = NativeInfo;

/** Versions, BLAS in use, torch threads and CUDA devices. Loads the addon. */
export function info(): RuntimeInfo {
  return native().info();
}

/** Sets torch's intra-op threads (default: QSAE_THREADS, else the number of cores). */
export function setThreads(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`Expected an integer >= 1 for threads but received ${n}`);
  return native().setThreads(n);
}

/** Seeds torch's generators (CPU and CUDA). */
export function manualSeed(seed: number): void {
  native().manualSeed(seed);
}

export { VERSION };
