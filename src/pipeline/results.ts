// results.json / results.csv: every metric of every finished cell, with its cell key and 95% interval.
// Built from RUNDIR alone (plan.json + the cells' metrics.json), so any shard, or `qsae report`, can merge.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { InputError } from "../errors.js";
import { VERSION } from "../version.js";
import type { Cell, MetricRow } from "./cells.js";
import { readCell, writeFileAtomic } from "./runner.js";
import type { CellRecord } from "./runner.js";

export interface PlanFile {
  format: "qsae-plan";
  version: 1;
  name: string;
  config: unknown;
  layers: Record<string, number[]>;
  cells: Cell[];
}

export interface ResultRow extends MetricRow {
  cell: string;
  key: string;
  stage: string;
}

export interface ResultsFile {
  format: "qsae-results";
  version: 1;
  qsae_version: string;
  name: string;
  complete: boolean;
  cells: { total: number; done: number; missing: string[] };
  metrics: ResultRow[];
}

export function readPlan(rundir: string): PlanFile {
  const p = join(rundir, "plan.json");
  if (!existsSync(p)) throw new InputError(`${rundir}: not a qsae run folder (no plan.json; start one with 'qsae run CONFIG --out ${rundir}')`);
  return JSON.parse(readFileSync(p, "utf8")) as PlanFile;
}

export function writePlan(rundir: string, plan: PlanFile): void {
  writeFileAtomic(join(rundir, "plan.json"), `${JSON.stringify(plan, null, 1)}\n`);
}

const cmp = (a: string | number | undefined, b: string | number | undefined) =>
  a === b ? 0 : a === undefined ? -1 : b === undefined ? 1 : typeof a === "number" && typeof b === "number" ? a - b : String(a) < String(b) ? -1 : 1;

/** Collects the metrics of the plan's finished cells (sorted by cell id, then metric). */
export function collectResults(rundir: string): { results: ResultsFile; records: Map<string, CellRecord> } {
  const plan = readPlan(rundir);
  const metrics: ResultRow[] = [];
  const missing: string[] = [];
  const records = new Map<string, CellRecord>();
  for (const cell of plan.cells) {
    const r = readCell(rundir, cell);
    if (!r) {
      missing.push(cell.id);
      continue;
    }
    records.set(cell.id, r.record);
    for (const m of r.metrics) metrics.push({ cell: cell.id, key: cell.key, stage: cell.stage, ...m });
  }
  metrics.sort((a, b) => cmp(a.cell, b.cell) || cmp(a.labels.sae_precision, b.labels.sae_precision) || cmp(a.labels.sae, b.labels.sae) || cmp(a.labels.subject, b.labels.subject) || cmp(a.metric, b.metric));
  return {
    results: {
      format: "qsae-results",
      version: 1,
      qsae_version: VERSION,
      name: plan.name,
      complete: missing.length === 0,
      cells: { total: plan.cells.length, done: plan.cells.length - missing.length, missing },
      metrics,
    },
    records,
  };
}

const LABEL_ORDER = ["model", "precision", "reference", "sae_precision", "hook", "layer", "sae", "sae_type", "expansion", "l1", "seed", "benchmark", "subject"];

function csvCell(v: unknown): string {
  if (v === undefined || v === null) return "";
  const s = typeof v === "number" ? (Number.isFinite(v) ? String(v) : String(v)) : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function resultsCsv(r: ResultsFile): string {
  const labelKeys = new Set<string>();
  for (const m of r.metrics) for (const k of Object.keys(m.labels)) labelKeys.add(k);
  const labels = [...LABEL_ORDER.filter((k) => labelKeys.has(k)), ...[...labelKeys].filter((k) => !LABEL_ORDER.includes(k)).sort()];
  const header = ["stage", "cell", "key", ...labels, "metric", "value", "ci95_lo", "ci95_hi", "n"];
  const lines = [header.join(",")];
  for (const m of r.metrics)
    lines.push(
      [m.stage, m.cell, m.key, ...labels.map((k) => m.labels[k]), m.metric, m.value, m.ci95?.[0], m.ci95?.[1], m.n].map(csvCell).join(","),
    );
  return `${lines.join("\n")}\n`;
}

/** Writes results.json and results.csv into RUNDIR (atomically); returns the results. */
export function writeResults(rundir: string): ResultsFile {
  const { results } = collectResults(rundir);
  writeFileAtomic(join(rundir, "results.json"), `${JSON.stringify(results, null, 1)}\n`);
  writeFileAtomic(join(rundir, "results.csv"), resultsCsv(results));
  return results;
}
