// Progress of a run: a live multi-line display on a TTY (one line per running cell with its rate and ETA,
// plus a totals line), plain lines otherwise, JSON lines with --log-json; and always a run log file.
import { appendFileSync } from "node:fs";
import type { Writable } from "node:stream";

import type { RunEvent } from "./runner.js";

export type ProgressMode = "tty" | "plain" | "json" | "silent";

function fmtDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}` : `${m}:${String(sec).padStart(2, "0")}`;
}

function fmtRate(r: number | null, unit: string | undefined): string {
  if (r === null) return "";
  const u = unit ?? "it";
  return r >= 1000 ? `${(r / 1000).toFixed(1)}k ${u}/s` : `${r.toFixed(r >= 10 ? 0 : 1)} ${u}/s`;
}

export class RunProgress {
  private readonly running = new Map<string, { stage: string; id: string; text: string; started: number }>();
  private total = 0;
  private finished = 0;
  private failed = 0;
  private lastDraw = 0;
  private drawnLines = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly t0 = Date.now();

  constructor(
    private readonly mode: ProgressMode,
    private readonly out: Writable = process.stderr,
    private readonly logFile: string | null = null,
    private readonly prefix = "",
  ) {
    if (mode === "tty") this.timer = setInterval(() => this.draw(true), 500);
  }

  private log(line: string): void {
    if (this.logFile) appendFileSync(this.logFile, `${new Date().toISOString()} ${this.prefix}${line}\n`);
  }

  private print(line: string): void {
    if (this.mode === "plain") this.out.write(`${this.prefix}${line}\n`);
    else if (this.mode === "tty") {
      this.clear();
      this.out.write(`${line}\n`);
      this.draw(true);
    }
  }

  /** A message outside the cell events (validation, results written...). */
  note(line: string): void {
    this.log(line);
    if (this.mode === "json") this.out.write(`${JSON.stringify({ type: "note", time: new Date().toISOString(), message: line })}\n`);
    else this.print(line);
  }

  readonly onEvent = (e: RunEvent): void => {
    if (this.mode === "json" && e.type !== "progress") {
      const rec: Record<string, unknown> = { type: e.type, time: new Date().toISOString() };
      if ("cell" in e && e.cell) Object.assign(rec, { cell: e.cell.id, key: e.cell.key, stage: e.cell.stage });
      if (e.type === "plan") Object.assign(rec, { total: e.total, mine: e.mine, done: e.done });
      if (e.type === "start") rec.device = e.device;
      if (e.type === "done") rec.seconds = e.seconds;
      if (e.type === "fail") rec.error = e.error.message;
      if (e.type === "skip") rec.reason = e.reason;
      if (e.type === "log") rec.message = e.message;
      if (e.type === "wait") rec.waiting = e.cells.map((c) => c.id);
      this.out.write(`${JSON.stringify(rec)}\n`);
    }
    switch (e.type) {
      case "plan":
        this.total = e.mine;
        this.finished = e.done;
        this.log(`plan: ${e.total} cells, ${e.mine} for this process, ${e.done} already done`);
        if (this.mode !== "json") this.print(`${e.mine} cells (${e.done} already done)`);
        break;
      case "skip":
        if (e.reason === "claimed") this.log(`${e.cell.id}: claimed by another process`);
        break;
      case "start":
        this.running.set(e.cell.id, { stage: e.cell.stage, id: e.cell.id, text: "", started: Date.now() });
        this.log(`start ${e.cell.id} on ${e.device} (${e.cell.dir})`);
        if (this.mode === "plain") this.print(`[${this.finished + this.failed + 1}/${this.total}] ${e.cell.id} ...`);
        this.draw(true);
        break;
      case "progress": {
        const r = this.running.get(e.cell.id);
        if (!r) break;
        const p = e.progress;
        const pct = p.total > 0 ? `${((100 * p.done) / p.total).toFixed(0)}%` : `${p.done}`;
        r.text = [pct, fmtRate(e.rate, p.unit), e.etaS !== null ? `ETA ${fmtDuration(e.etaS)}` : "", p.message ?? ""].filter(Boolean).join("  ");
        if (this.mode === "json") {
          const now = Date.now();
          if (now - this.lastDraw > 1000) {
            this.lastDraw = now;
            this.out.write(`${JSON.stringify({ type: "progress", time: new Date().toISOString(), cell: e.cell.id, ...p, rate: e.rate, eta_s: e.etaS })}\n`);
          }
        } else this.draw(false);
        break;
      }
      case "done":
        this.running.delete(e.cell.id);
        this.finished++;
        this.log(`done ${e.cell.id} in ${e.seconds.toFixed(1)} s`);
        this.print(`  ✓ ${e.cell.id} (${e.seconds.toFixed(1)} s)`);
        break;
      case "fail":
        this.running.delete(e.cell.id);
        this.failed++;
        this.log(`FAILED ${e.cell.id}: ${e.error.message}`);
        if (this.mode !== "json") this.print(`  ✗ ${e.cell.id}: ${e.error.message}`);
        break;
      case "wait":
        this.log(`waiting for ${e.cells.length} cells run by other processes: ${e.cells.map((c) => c.id).join(", ")}`);
        if (this.mode === "plain" && e.cells.length) this.print(`waiting for ${e.cells.length} cell(s) run by other processes`);
        break;
      case "log":
        this.log(`${e.cell ? `${e.cell.id}: ` : ""}${e.message}`);
        break;
    }
  };

  private clear(): void {
    if (this.drawnLines > 0) {
      this.out.write(`\x1b[${this.drawnLines}A\x1b[J`);
      this.drawnLines = 0;
    }
  }

  private draw(force: boolean): void {
    if (this.mode !== "tty") return;
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const width = (this.out as NodeJS.WriteStream).columns || 100;
    const lines = [
      `${this.prefix}qsae run  ${this.finished}/${this.total} cells${this.failed ? `, ${this.failed} failed` : ""}  elapsed ${fmtDuration((now - this.t0) / 1000)}`,
      ...[...this.running.values()].map((r) => `  ${r.stage.padEnd(8)} ${r.id}  ${r.text || `${fmtDuration((now - r.started) / 1000)}`}`),
    ].map((l) => (l.length > width - 1 ? `${l.slice(0, width - 2)}…` : l));
    this.clear();
    this.out.write(`${lines.join("\n")}\n`);
    this.drawnLines = lines.length;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.mode === "tty") this.clear();
  }
}
