// Error classes of the public API. Native errors arrive as Error, TypeError or RangeError with the
// message naming the file, tensor or option at fault; these add qsae-specific cases.

/** A method was called on a handle after dispose(). */
export class DisposedError extends Error {
  constructor(what: string) {
    super(`${what} was disposed`);
    this.name = "DisposedError";
  }
}

/** Bad user input (files, configs, options): the CLI prints the message alone, without a stack. */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InputError";
  }
}

/**
 * Awaits a native Promise and, on rejection, gives the error the stack of the JS call site
 * (native stacks end at the worker and say nothing useful).
 */
export async function withCallSite<T>(p: Promise<T>): Promise<T> {
  const site = new Error();
  try {
    return await p;
  } catch (e) {
    if (e instanceof Error && site.stack) {
      e.stack = `${e.name}: ${e.message}\n${site.stack.split("\n").slice(2).join("\n")}`;
    }
    throw e;
  }
}
