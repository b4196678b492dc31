// Ctrl-C for long commands: an AbortSignal that fires on SIGINT (and any other signals named) until
// release() is called, so native work stops cleanly and finished work is kept.
export interface Interrupt {
  signal: AbortSignal;
  release(): void;
}

/** `message`: the abort reason's text (an AbortError); default: the plain AbortController reason. */
export function onInterrupt(message?: string, signals: NodeJS.Signals[] = ["SIGINT"]): Interrupt {
  const ac = new AbortController();
  const handler = () => ac.abort(message === undefined ? undefined : Object.assign(new Error(message), { name: "AbortError" }));
  for (const s of signals) process.once(s, handler);
  return {
    signal: ac.signal,
    release: () => {
      for (const s of signals) process.off(s, handler);
    },
  };
}
