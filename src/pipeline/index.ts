// qsae's experiment pipeline: config → validated plan of cells → runs (resumable, shardable) → results and report.
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";

import { InputError } from "../errors.js";
import { writeReport } from "../report/index.js";
import { loadReportData } from "../report/data.js";
import { summaryTable } from "../report/index.js";
import { VERSION } from "../version.js";
import { assertChecked, checkExperiment } from "./check.js";
import type { CheckReport } from "./check.js";
import type { ExperimentConfig } from "./config.js";
import { loadConfig } from "./config.js";
import { hashModelFolder } from "./hash.js";
import { buildPlan } from "./plan.js";
import type { Plan } from "./plan.js";
import type { ProgressMode } from "./progress.js";
import { RunProgress } from "./progress.js";
import { writePlan, writeResults } from "./results.js";
import type { ResultsFile } from "./results.js";
import type { RunCellsResult, RunEvent } from "./runner.js";
import { isDone, runCells, writeFileAtomic } from "./runner.js";
import { pipelineStages } from "./stages.js";

export { loadConfig, parseConfig, resolveLayers, ConfigSchema, LAYER_ALIASES } from "./config.js";
export type { ExperimentConfig, ConfigInput } from "./config.js";
export { buildPlan, saeGrid, transferPairs } from "./plan.js";
export type { Plan, SaeGridEntry } from "./plan.js";
export { keyCells, parseShard, shardFromEnv, shardOf } from "./cells.js";
export type { Cell, CellSpec, MetricRow } from "./cells.js";
export { runCells, isDone, readCell } from "./runner.js";
export type { StageFn, StageContext, StageOutput, RunEvent, RunCellsOptions, RunCellsResult } from "./runner.js";
export { collectResults, writeResults, resultsCsv, readPlan } from "./results.js";
export type { ResultsFile, ResultRow } from "./results.js";
export { checkExperiment } from "./check.js";
export type { CheckReport } from "./check.js";
export { pipelineStages } from "./stages.js";
export const STAGES = ["extract", "train", "transfer", "align", "splice", "bench", "compare"] as const;

export interface RunExperimentOptions {
  /** RUNDIR (default: the config's `out`, else runs/<name>) */
  out?: string;
  /** skip finished cells (default true); false recomputes this plan's cells */
  resume?: boolean;
  shard?: { index: number; count: number };
  only?: string[];
  devices?: string[];
  /** validate and plan only */
  check?: boolean;
  progress?: ProgressMode;
  signal?: AbortSignal;
  onEvent?: (e: RunEvent) => void;
  /** write report.html when every cell is done (default true) */
  report?: boolean;
  /** skip the native model plans in the validation pass */
  shallowCheck?: boolean;
}

export interface RunExperimentResult {
  rundir: string;
  plan: Plan;
  check: CheckReport;
  run: RunCellsResult | null;
  results: ResultsFile | null;
  reportPath: string | null;
  summary: string;
}

function defaultRundir(c: ExperimentConfig): string {
  return c.out ?? resolve("runs", c.name ?? "experiment");
}

/** Validates, plans and runs an experiment; writes results.json/csv and report.html when complete. */
export async function runExperiment(config: string | ExperimentConfig, opts: RunExperimentOptions = {}): Promise<RunExperimentResult> {
  const c = typeof config === "string" ? loadConfig(config) : config;
  const rundir = resolve(opts.out ?? defaultRundir(c));
  const check = await checkExperiment(c, { deep: !opts.shallowCheck });
  assertChecked(check, c.source);
  const plan = buildPlan(c);
  if (opts.only) for (const s of opts.only) if (!(STAGES as readonly string[]).includes(s)) throw new InputError(`--only: unknown stage '${s}' (stages: ${STAGES.join(", ")})`);
  const stageCounts = new Map<string, number>();
  for (const cell of plan.cells) stageCounts.set(cell.stage, (stageCounts.get(cell.stage) ?? 0) + 1);
  const summaryOfPlan = `${plan.cells.length} cells: ${[...stageCounts].map(([s, n]) => `${n} ${s}`).join(", ")}`;
  if (opts.check) {
    const done = existsSync(rundir) ? plan.cells.filter((cell) => isDone(rundir, cell)).length : 0;
    return { rundir, plan, check, run: null, results: null, reportPath: null, summary: `${summaryOfPlan}${done ? ` (${done} already done in ${rundir})` : ""}` };
  }

  mkdirSync(rundir, { recursive: true });
  const { source, ...cfgForPlan } = c;
  writePlan(rundir, { format: "qsae-plan", version: 1, name: c.name ?? "experiment", config: cfgForPlan, layers: plan.layers, cells: plan.cells });
  if (opts.resume === false) {
    if (opts.shard && opts.shard.count > 1) throw new InputError("--no-resume cannot be combined with --shard (other shards' finished cells would be removed)");
    for (const cell of plan.cells) if (!opts.only || opts.only.includes(cell.stage)) rmSync(join(rundir, cell.dir), { recursive: true, force: true });
  }
  const metaPath = join(rundir, "run-meta.json");
  const prevMeta = existsSync(metaPath) ? (JSON.parse(readFileSync(metaPath, "utf8")) as Record<string, unknown>) : {};
  const models: Record<string, unknown> = {};
  for (const m of c.models) {
    const h = hashModelFolder(m.path);
    models[m.name] = { path: m.path, config_hash: h.configHash, weights_hash: h.weightsHash, num_layers: check.models.find((x) => x.name === m.name)?.numLayers };
  }
  const meta: Record<string, unknown> = {
    ...prevMeta,
    qsae_version: VERSION,
    host: hostname(),
    config_file: c.source,
    device: (opts.devices ?? c.devices).join(","),
    started: (prevMeta.started as string | undefined) ?? new Date().toISOString(),
    models,
  };
  writeFileAtomic(metaPath, `${JSON.stringify(meta, null, 1)}\n`);

  const shardTag = opts.shard && opts.shard.count > 1 ? `[shard ${opts.shard.index}/${opts.shard.count}] ` : "";
  const progress = new RunProgress(opts.progress ?? "silent", process.stderr, join(rundir, "run.log"), shardTag);
  progress.note(`qsae ${VERSION}: ${summaryOfPlan} → ${rundir}`);
  let run: RunCellsResult;
  try {
    run = await runCells(plan.cells, pipelineStages(c), {
      rundir,
      shard: opts.shard,
      only: opts.only,
      devices: opts.devices ?? c.devices,
      signal: opts.signal,
      onEvent: (e) => {
        progress.onEvent(e);
        opts.onEvent?.(e);
      },
    });
  } finally {
    progress.close();
  }
  // torch/BLAS versions, once the addon is loaded by the stages
  try {
    const { info } = await import("../runtime.js");
    const r = info();
    Object.assign(meta, { torch_version: r.torchVersion, blas: r.blas, threads: r.threads, cuda_devices: r.cudaDevices.map((d) => d.name) });
  } catch {
    // the addon is not available: leave the versions out
  }
  const complete = plan.cells.every((cell) => isDone(rundir, cell));
  if (complete) meta.finished = new Date().toISOString();
  writeFileAtomic(metaPath, `${JSON.stringify(meta, null, 1)}\n`);
  let results: ResultsFile;
  let reportPath: string | null = null;
  if (complete && opts.report !== false) {
    const w = await writeReport(rundir);
    reportPath = w.path;
    results = JSON.parse(readFileSync(join(rundir, "results.json"), "utf8")) as ResultsFile;
  } else results = writeResults(rundir);
  const summary = summaryTable(loadReportData(rundir));
  progress.note(`${run.ran.length} cells run, ${run.skipped.length} already done${run.failed.length ? `, ${run.failed.length} FAILED` : ""}${run.pending.length ? `, ${run.pending.length} left to other processes` : ""}`);
  if (run.failed.length) {
    const list = run.failed.map((f) => `${f.id}: ${f.error}`).join("\n  ");
    const e = new InputError(`${run.failed.length} cell(s) failed (log: ${join(rundir, "run.log")}):\n  ${list}`);
    throw Object.assign(e, { result: { rundir, plan, check, run, results, reportPath, summary } });
  }
  return { rundir, plan, check, run, results, reportPath, summary };
}
