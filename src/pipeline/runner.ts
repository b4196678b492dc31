// The cell runner: runs a DAG of cells into RUNDIR with atomic outputs, resume, claims and shards.
//
// RUNDIR/
//   cells/<stage>/<slug>-<key16>/   finished cells (a folder appears only by an atomic rename): cell.json,
//                                   metrics.json, and the stage's artifacts
//   tmp/                            cells being written (removed on success, ignored otherwise)
//   claims/<key>.json               who runs a cell now (created with O_EXCL; refreshed while running;
//                                   a claim not refreshed for `staleMs` may be taken over)
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

import { VERSION } from "../version.js";
import type { Cell, MetricRow } from "./cells.js";
import { shardOf } from "./cells.js";

export interface StageProgress {
  done: number;
  total: number;
  unit?: string;
  message?: string;
}

export interface StageContext {
  cell: Cell;
  /** the folder to write this cell's artifacts into (a temp folder, renamed into place on success) */
  dir: string;
  /** the finished folder of a dependency */
  input(depId: string): string;
  /** the cell object of a dependency */
  dep(depId: string): Cell;
  device: string;
  signal: AbortSignal;
  progress(p: StageProgress): void;
  log(message: string): void;
}

export interface StageOutput {
  metrics?: MetricRow[];
  /** extra fields stored in cell.json under `info` (shown in the report's metadata) */
  info?: Record<string, unknown>;
}

export type StageFn = (ctx: StageContext) => Promise<StageOutput | void>;

export type RunEvent =
  | { type: "plan"; total: number; mine: number; done: number }
  | { type: "skip"; cell: Cell; reason: "done" | "claimed" }
  | { type: "start"; cell: Cell; device: string }
  | { type: "progress"; cell: Cell; progress: StageProgress; rate: number | null; etaS: number | null }
  | { type: "done"; cell: Cell; seconds: number }
  | { type: "fail"; cell: Cell; error: Error }
  | { type: "wait"; cells: Cell[] }
  | { type: "log"; cell: Cell | null; message: string };

export interface RunCellsOptions {
  rundir: string;
  shard?: { index: number; count: number };
  /** run only cells of these stages (their dependencies must be done or being done by another process) */
  only?: string[];
  /** devices to run cells on: one cell at a time per device (default ["cpu"]) */
  devices?: string[];
  signal?: AbortSignal;
  onEvent?: (e: RunEvent) => void;
  /** a claim not refreshed for this long is stale (default QSAE_CLAIM_STALE_S or 600 s) */
  staleMs?: number;
  /** how often to look at cells run by other processes (default 1 s) */
  pollMs?: number;
}

export interface RunCellsResult {
  ran: string[];
  skipped: string[];
  failed: { id: string; error: string }[];
  /** cells of the plan not finished when this process stopped (run by other shards, or blocked) */
  pending: string[];
}

export interface CellRecord {
  id: string;
  stage: string;
  key: string;
  params: Record<string, unknown>;
  inputs: Record<string, string>;
  labels: Record<string, string | number>;
  deps: Record<string, string>;
  qsae_version: string;
  host: string;
  pid: number;
  device: string;
  started: string;
  seconds: number;
  info?: Record<string, unknown>;
}

export function isDone(rundir: string, cell: Cell): boolean {
  return existsSync(join(rundir, cell.dir, "cell.json"));
}

/** Writes a file atomically: a temp file in the same folder, then rename. */
export function writeFileAtomic(path: string, data: string | Buffer): void {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

function defaultStaleMs(): number {
  const s = Number(process.env.QSAE_CLAIM_STALE_S);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 600_000;
}

class Claims {
  constructor(
    private readonly dir: string,
    private readonly staleMs: number,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  private path(cell: Cell): string {
    return join(this.dir, `${cell.key}.json`);
  }

  /** Atomic create; a stale claim is first moved aside by rename (only one process wins that rename). */
  tryClaim(cell: Cell): boolean {
    const p = this.path(cell);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(p, "wx");
        writeSync(fd, JSON.stringify({ id: cell.id, host: hostname(), pid: process.pid, since: new Date().toISOString() }));
        closeSync(fd);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        if (!this.isStale(cell)) return false;
        try {
          renameSync(p, `${p}.stale-${process.pid}-${Date.now()}`);
        } catch {
          return false;
        }
      }
    }
    return false;
  }

  isClaimed(cell: Cell): boolean {
    return existsSync(this.path(cell)) && !this.isStale(cell);
  }

  isStale(cell: Cell): boolean {
    try {
      return Date.now() - statSync(this.path(cell)).mtimeMs > this.staleMs;
    } catch {
      return false;
    }
  }

  refresh(cell: Cell): void {
    const now = new Date();
    try {
      utimesSync(this.path(cell), now, now);
    } catch {
      // the claim was taken over; the rename at the end decides who wins
    }
  }

  release(cell: Cell): void {
    rmSync(this.path(cell), { force: true });
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((res) => {
    const onAbort = () => {
      clearTimeout(t);
      res();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      res();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });

/**
 * Runs the cells (topologically sorted, as keyCells returns them) with the given stage functions.
 * Finished cells are skipped; this process runs its shard's cells and waits for dependencies that other
 * processes are running. A dependency owned by another shard and left unclaimed for `staleMs` is run here.
 */
export async function runCells(cells: Cell[], stages: Record<string, StageFn>, opts: RunCellsOptions): Promise<RunCellsResult> {
  const { rundir } = opts;
  const emit = opts.onEvent ?? (() => {});
  const staleMs = opts.staleMs ?? defaultStaleMs();
  const pollMs = opts.pollMs ?? 1000;
  const devices = opts.devices?.length ? opts.devices : ["cpu"];
  const signal = opts.signal ?? new AbortController().signal;
  for (const c of cells) if (!stages[c.stage]) throw new Error(`no stage function for stage '${c.stage}' (cell ${c.id})`);
  mkdirSync(join(rundir, "cells"), { recursive: true });
  mkdirSync(join(rundir, "tmp"), { recursive: true });
  const claims = new Claims(join(rundir, "claims"), staleMs);

  const byId = new Map(cells.map((c) => [c.id, c]));
  const shardMap = opts.shard && opts.shard.count > 1 ? shardOf(cells, opts.shard.count) : null;
  const inScope = (c: Cell) => !opts.only || opts.only.includes(c.stage);
  const mineSet = new Set(cells.filter((c) => inScope(c) && (!shardMap || shardMap.get(c.id) === opts.shard!.index)).map((c) => c.id));
  // With --only, dependencies outside the selected stages must already exist (or be running elsewhere).
  const done = new Set(cells.filter((c) => isDone(rundir, c)).map((c) => c.id));
  emit({ type: "plan", total: cells.length, mine: mineSet.size, done: [...mineSet].filter((id) => done.has(id)).length });

  const result: RunCellsResult = { ran: [], skipped: [], failed: [], pending: [] };
  const failed = new Set<string>();
  const running = new Map<string, Promise<void>>();
  const freeDevices = [...devices];
  const waitingSince = new Map<string, number>();
  for (const id of mineSet) if (done.has(id)) {
    result.skipped.push(id);
    emit({ type: "skip", cell: byId.get(id)!, reason: "done" });
  }

  const blockedByFailure = (c: Cell): boolean => c.deps.some((d) => failed.has(d) || blockedByFailure(byId.get(d)!));

  const runOne = async (cell: Cell, device: string): Promise<void> => {
    const started = Date.now();
    const tmp = join(rundir, "tmp", `${cell.dir.split("/").pop()}.${process.pid}.${Math.random().toString(36).slice(2, 8)}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const heartbeat = setInterval(() => claims.refresh(cell), Math.max(50, Math.min(30_000, staleMs / 4)));
    let lastProgress = { t: started, done: 0 };
    let rate: number | null = null;
    emit({ type: "start", cell, device });
    try {
      const ctx: StageContext = {
        cell,
        dir: tmp,
        input: (id) => {
          const d = byId.get(id);
          if (!d || !cell.deps.includes(id)) throw new Error(`cell ${cell.id} read ${id}, which is not one of its dependencies`);
          return join(rundir, d.dir);
        },
        dep: (id) => byId.get(id)!,
        device,
        signal,
        progress: (p) => {
          const now = Date.now();
          if (now - lastProgress.t > 250 && p.done >= lastProgress.done) {
            const r = ((p.done - lastProgress.done) * 1000) / (now - lastProgress.t);
            rate = rate === null ? r : 0.7 * rate + 0.3 * r;
            lastProgress = { t: now, done: p.done };
          }
          const etaS = rate && rate > 0 && p.total > p.done ? (p.total - p.done) / rate : null;
          emit({ type: "progress", cell, progress: p, rate, etaS });
        },
        log: (message) => emit({ type: "log", cell, message }),
      };
      const out = (await stages[cell.stage](ctx)) ?? {};
      signal.throwIfAborted();
      const metrics = (out.metrics ?? []).map((m) => ({ ...m, labels: { ...(cell.labels ?? {}), ...m.labels } }));
      const seconds = (Date.now() - started) / 1000;
      const record: CellRecord = {
        id: cell.id,
        stage: cell.stage,
        key: cell.key,
        params: cell.params,
        inputs: cell.inputs ?? {},
        labels: cell.labels ?? {},
        deps: Object.fromEntries(cell.deps.map((d) => [d, byId.get(d)!.key])),
        qsae_version: VERSION,
        host: hostname(),
        pid: process.pid,
        device,
        started: new Date(started).toISOString(),
        seconds,
        ...(out.info ? { info: out.info } : {}),
      };
      writeFileSync(join(tmp, "metrics.json"), `${JSON.stringify(metrics, null, 1)}\n`);
      writeFileSync(join(tmp, "cell.json"), `${JSON.stringify(record, null, 1)}\n`);
      const final = join(rundir, cell.dir);
      mkdirSync(join(final, ".."), { recursive: true });
      try {
        renameSync(tmp, final);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // Another process finished the same cell first (after a stale takeover): keep theirs.
        if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
        rmSync(tmp, { recursive: true, force: true });
      }
      done.add(cell.id);
      result.ran.push(cell.id);
      emit({ type: "done", cell, seconds });
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      const err = e instanceof Error ? e : new Error(String(e));
      failed.add(cell.id);
      result.failed.push({ id: cell.id, error: err.message });
      emit({ type: "fail", cell, error: err });
    } finally {
      clearInterval(heartbeat);
      claims.release(cell);
    }
  };

  // Cells this process must see finished: its own, and (transitively) their dependencies.
  const needed = new Set<string>();
  const need = (id: string) => {
    if (needed.has(id)) return;
    needed.add(id);
    for (const d of byId.get(id)!.deps) need(d);
  };
  for (const id of mineSet) need(id);

  let lastWaitReport = 0;
  const reportedClaimed = new Set<string>();
  while (!signal.aborted) {
    for (const id of needed) if (!done.has(id) && isDone(rundir, byId.get(id)!)) done.add(id);
    let started = false;
    const waitingOn: Cell[] = [];
    for (const c of cells) {
      if (!needed.has(c.id) || done.has(c.id) || failed.has(c.id) || running.has(c.id)) continue;
      if (blockedByFailure(c)) continue;
      if (!c.deps.every((d) => done.has(d))) continue;
      const mine = mineSet.has(c.id);
      if (!mine) {
        // Someone else's: wait, unless it is left unclaimed for too long (that shard died or never started).
        if (!inScope(c)) {
          if (!claims.isClaimed(c)) {
            failed.add(c.id);
            result.failed.push({ id: c.id, error: `not done: it is a '${c.stage}' cell, outside --only ${opts.only!.join(",")}; run that stage first` });
          } else waitingOn.push(c);
          continue;
        }
        if (claims.isClaimed(c)) {
          waitingSince.delete(c.id);
          waitingOn.push(c);
          continue;
        }
        const since = waitingSince.get(c.id) ?? Date.now();
        waitingSince.set(c.id, since);
        if (Date.now() - since < staleMs) {
          waitingOn.push(c);
          continue;
        }
      }
      if (freeDevices.length === 0) break;
      const need = c.devices ?? 1;
      if (need > devices.length) {
        failed.add(c.id);
        result.failed.push({ id: c.id, error: `needs ${need} devices (its model is split over ${need}); this run has ${devices.length}: ${devices.join(", ")}` });
        continue;
      }
      if (freeDevices.length < need) continue; // wait until enough devices are free
      if (!claims.tryClaim(c)) {
        if (mine && !reportedClaimed.has(c.id)) {
          reportedClaimed.add(c.id);
          emit({ type: "skip", cell: c, reason: "claimed" });
        }
        waitingOn.push(c);
        continue;
      }
      if (isDone(rundir, c)) {
        // finished between our check and the claim
        claims.release(c);
        done.add(c.id);
        continue;
      }
      const taken = freeDevices.splice(0, need);
      started = true;
      const p = runOne(c, taken.join(",")).finally(() => {
        running.delete(c.id);
        freeDevices.push(...taken);
      });
      running.set(c.id, p);
    }
    const outstanding = [...needed].filter((id) => !done.has(id) && !failed.has(id) && !blockedByFailure(byId.get(id)!));
    if (outstanding.length === 0 && running.size === 0) break;
    if (started) continue;
    if (running.size > 0) {
      const ac = new AbortController();
      const onAbort = () => ac.abort();
      signal.addEventListener("abort", onAbort, { once: true });
      await Promise.race([...running.values(), sleep(pollMs, ac.signal)]);
      ac.abort();
      signal.removeEventListener("abort", onAbort);
      continue;
    }
    if (Date.now() - lastWaitReport > 30_000) {
      lastWaitReport = Date.now();
      emit({ type: "wait", cells: waitingOn });
    }
    await sleep(pollMs, signal);
  }
  await Promise.allSettled(running.values());
  if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error("aborted");
  for (const id of needed) if (!done.has(id) && !failed.has(id)) result.pending.push(id);
  return result;
}

/** Reads a finished cell's record and metrics (null when it is not done). */
export function readCell(rundir: string, cell: Cell): { record: CellRecord; metrics: MetricRow[] } | null {
  const dir = join(rundir, cell.dir);
  if (!existsSync(join(dir, "cell.json"))) return null;
  const record = JSON.parse(readFileSync(join(dir, "cell.json"), "utf8")) as CellRecord;
  const metrics = existsSync(join(dir, "metrics.json")) ? (JSON.parse(readFileSync(join(dir, "metrics.json"), "utf8")) as MetricRow[]) : [];
  return { record, metrics };
}
