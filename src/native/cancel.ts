// Bridges AbortSignal and progress callbacks to the options every long native call accepts.
import { native } from "./addon.js";
import type { NativeCancelToken, NativeJobOptions, NativeProgress } from "./types.js";

export type Progress = NativeProgress;

export interface JobOptions {
  /** Aborting rejects the pending Promise with an AbortError at the next unit of work. */
  signal?: AbortSignal;
  /** Called on the JS thread at most every 100 ms. */
  onProgress?: (p: Progress) => void;
}

/** A native cancel token tied to an AbortSignal; call release() when the job ends. */
export class AbortToken {
  readonly token: NativeCancelToken;
  private readonly signal?: AbortSignal;
  private readonly onAbort = () => this.token.cancel();

  constructor(signal?: AbortSignal) {
    this.token = new (native().CancelToken)();
    this.signal = signal;
    if (signal?.aborted) this.token.cancel();
    else signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  release(): void {
    this.signal?.removeEventListener("abort", this.onAbort);
  }
}

/**
 * Runs a native job with cancellation and progress wired in: `call` receives the native options.
 * Throws the signal's AbortError at once if it is already aborted.
 */
export async function runJob<T>(opts: JobOptions | undefined, call: (o: NativeJobOptions) => Promise<T>): Promise<T> {
  opts?.signal?.throwIfAborted();
  const abort = new AbortToken(opts?.signal);
  const site = new Error();
  try {
    return await call({ cancel: abort.token, onProgress: opts?.onProgress });
  } catch (e) {
    if (e instanceof Error && site.stack) e.stack = `${e.name}: ${e.message}\n${site.stack.split("\n").slice(2).join("\n")}`;
    throw e;
  } finally {
    abort.release();
  }
}
