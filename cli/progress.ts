// One progress display for every long command: a cli-progress bar on a TTY (rate, ETA, a message),
// plain lines at most every 5 s otherwise (logs, CI). Writes to stderr so stdout stays parseable.
import cliProgress from "cli-progress";

export interface ProgressBar {
  /** done units so far; message: free text such as "loss 2.31" */
  update(done: number, message?: string, total?: number): void;
  /** prints a line without breaking the bar */
  log(line: string): void;
  stop(): void;
}

export function progressBar(label: string, total: number, unit: string, stream: NodeJS.WriteStream = process.stderr): ProgressBar {
  const t0 = Date.now();
  let tot = total;
  const rate = (done: number) => {
    const s = (Date.now() - t0) / 1000;
    return s > 0 ? done / s : 0;
  };
  const fmtRate = (r: number) => (r >= 100 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(3));
  if (!stream.isTTY) {
    let last = 0;
    let lastDone = -1;
    return {
      update(done, message, total) {
        if (total !== undefined) tot = total;
        const now = Date.now();
        if (done === lastDone || (now - last < 5000 && done < tot)) return;
        last = now;
        lastDone = done;
        const r = rate(done);
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
  bar.start(total, 0, { rate: "0", message: "" });
  return {
    update(done, message, total) {
      if (total !== undefined && total !== tot) {
        tot = total;
        bar.setTotal(total);
      }
      bar.update(done, { rate: fmtRate(rate(done)), message: message ?? "" });
    },
    log(line) {
      stream.write(`\r\x1b[K${line}\n`);
    },
    stop() {
      bar.stop();
    },
  };
}
