// One progress display for every long command: a cli-progress bar on a TTY (rate, ETA, a message),
// plain lines at most every 5 s otherwise (logs, CI), the first and the last included. Writes to stderr so
// stdout stays parseable. Every command that reports progress should go through this (no per-command copies).
import cliProgress from "cli-progress";

export interface ProgressBar {
  /**
   * done units so far; message: free text such as "loss 2.31"; rate: units/s as the caller measured it
   * (e.g. of this session of a resumed job), default done / seconds since the bar was made.
   */
  update(done: number, message?: string, total?: number, rate?: number): void;
  /** prints a line without breaking the bar */
  log(line: string): void;
  stop(): void;
}

/** Non-TTY: a line at most every `MIN_LINE_INTERVAL_MS`, plus the first and the final (done >= total) one. */
export const MIN_LINE_INTERVAL_MS = 5000;

/** TTY: the bar appears at the first update and starts from its count (a resumed job's ETA counts from there). */
export function progressBar(label: string, total: number, unit: string, stream: NodeJS.WriteStream = process.stderr): ProgressBar {
  const t0 = Date.now();
  let tot = total;
  const rate = (done: number, given?: number) => {
    if (given !== undefined && Number.isFinite(given)) return given;
    const s = (Date.now() - t0) / 1000;
    return s > 0 ? done / s : 0;
  };
  const fmtRate = (r: number) => (r >= 100 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(3));
  if (!stream.isTTY) {
    let last = 0;
    let lastDone = -1;
    return {
      update(done, message, total, given) {
        if (total !== undefined) tot = total;
        const now = Date.now();
        if (done === lastDone || (now - last < MIN_LINE_INTERVAL_MS && done < tot)) return;
        last = now;
        lastDone = done;
        const r = rate(done, given);
        const eta = r > 0 && tot > done ? ` eta ${Math.round((tot - done) / r)}s` : "";
        stream.write(`${label}: ${done}/${tot} ${unit} (${fmtRate(r)} ${unit}/s${eta})${message ? ` ${message}` : ""}\n`);
      },
      log(line) {
        stream.write(`${line}\n`);
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${label} |{bar}| {value}/{total} ${unit}  {rate} ${unit}/s  eta {eta_formatted}  {message}`,
      hideCursor: true,
      etaBuffer: 50,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, message, total, given) {
      if (total !== undefined) tot = total;
      const payload = { rate: fmtRate(rate(done, given)), message: message ?? "" };
      if (!started) {
        started = true;
        bar.start(tot, done, payload);
        return;
      }
      if (total !== undefined) bar.setTotal(total);
      bar.update(done, payload);
    },
    log(line) {
      stream.write(started ? `\r\x1b[K${line}\n` : `${line}\n`);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
