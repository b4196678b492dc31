// What the report shows, computed from a run folder's results: pure data (no HTML), also used for the
// terminal summary at the end of `qsae run`.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import type { ResultRow, ResultsFile } from "../pipeline/results.js";
import { collectResults, readPlan } from "../pipeline/results.js";
import type { PlanFile } from "../pipeline/results.js";
import { SPLICE_METRICS } from "../pipeline/plan.js";
import type { CellRecord } from "../pipeline/runner.js";
import type { SpliceEval } from "../sae/splice.js";
import { PRECISION_ORDER } from "./charts.js";

export type CI = [number, number] | null;

export interface Flip {
  id: string;
  direction: "pass→fail" | "fail→pass";
  reference: { result: string; completion?: string; answer?: string | null };
  other: { result: string; completion?: string; answer?: string | null };
  prompt?: string;
}

export interface FlipSet {
  model: string;
  benchmark: string;
  reference: string;
  precision: string;
  n: number;
  passToFail: number;
  failToPass: number;
  mcnemarP: number | null;
  flips: Flip[];
}

export interface RunMeta {
  qsae_version?: string;
  torch_version?: string;
  blas?: string;
  device?: string;
  host?: string;
  config_file?: string | null;
  started?: string;
  finished?: string;
  argv?: string[];
  models?: Record<string, { path: string; config_hash: string; weights_hash: string; num_layers: number }>;
  [k: string]: unknown;
}

export interface ReportData {
  rundir: string;
  plan: PlanFile;
  results: ResultsFile;
  records: Map<string, CellRecord>;
  meta: RunMeta;
  flips: FlipSet[];
  reference: string;
  precisions: string[];
  models: string[];
}

export function sortPrecisions(ps: Iterable<string>): string[] {
  const list = [...new Set(ps)];
  return list.sort((a, b) => (PRECISION_ORDER.indexOf(a) + 1 || 99) - (PRECISION_ORDER.indexOf(b) + 1 || 99) || (a < b ? -1 : 1));
}

export function loadReportData(rundir: string): ReportData {
  const plan = readPlan(rundir);
  const { results, records } = collectResults(rundir);
  const metaPath = join(rundir, "run-meta.json");
  const meta = existsSync(metaPath) ? (JSON.parse(readFileSync(metaPath, "utf8")) as RunMeta) : {};
  const flips: FlipSet[] = [];
  for (const cell of plan.cells.filter((c) => c.stage === "compare")) {
    const f = join(rundir, cell.dir, "flips.json");
    if (existsSync(f)) flips.push(JSON.parse(readFileSync(f, "utf8")) as FlipSet);
  }
  const config = plan.config as { reference?: string; precisions?: string[] };
  const reference = config.reference ?? "bf16";
  const precisions = sortPrecisions(config.precisions ?? results.metrics.map((m) => String(m.labels.precision ?? "")).filter(Boolean));
  const models = [...new Set(plan.cells.map((c) => String(c.labels?.model ?? "")).filter(Boolean))];
  return { rundir, plan, results, records, meta, flips, reference, precisions, models };
}

export function select(rows: ResultRow[], where: Record<string, string | number | undefined>, metric?: string): ResultRow[] {
  return rows.filter(
    (r) => (metric === undefined || r.metric === metric) && Object.entries(where).every(([k, v]) => v === undefined || r.labels[k] === v),
  );
}

export interface BenchScore {
  model: string;
  benchmark: string;
  precision: string;
  metric: string;
  score: number;
  ci95: CI;
  n: number | undefined;
}

/** The headline score of every bench cell (not per-subject rows). */
export function benchScores(d: ReportData): BenchScore[] {
  return d.results.metrics
    .filter((m) => m.stage === "bench" && m.labels.subject === undefined && (m.metric === "pass@1" || m.metric === "accuracy"))
    .map((m) => ({
      model: String(m.labels.model),
      benchmark: String(m.labels.benchmark),
      precision: String(m.labels.precision),
      metric: m.metric,
      score: m.value,
      ci95: m.ci95,
      n: m.n,
    }));
}

/** SAE grid names in config order (from the train cells' params). */
export function gridNames(d: ReportData): { name: string; expansion: number; l1: number; seed: number; type: string }[] {
  const t = d.plan.cells.find((c) => c.stage === "train");
  return ((t?.params.grid as { name: string; expansion: number; l1: number; seed: number; type: string }[] | undefined) ?? []).slice();
}

export const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

/**
 * One SAE spliced into one model at one precision and site (the splice stage's metrics, grouped). A metric
 * the cell did not record is NaN (ce_score when zero-ablating the site costs nothing).
 */
export interface SpliceRow extends Omit<SpliceEval, "tokens"> {
  model: string;
  /** the model's precision */
  precision: string;
  /** the precision whose activations the SAE was trained on */
  sae_precision: string;
  sae: string;
  expansion: number;
  tokens: number | undefined;
}

export function spliceRows(d: ReportData): SpliceRow[] {
  const byKey = new Map<string, SpliceRow>();
  for (const m of d.results.metrics) {
    if (m.stage !== "splice") continue;
    // one splice cell covers every site of a model at one precision: a row is a (cell, site, SAE)
    const k = `${m.cell}\u0000${m.labels.hook}\u0000${m.labels.layer}\u0000${m.labels.sae_precision}\u0000${m.labels.sae}`;
    let r = byKey.get(k);
    if (!r) {
      r = {
        model: String(m.labels.model),
        hook: String(m.labels.hook),
        layer: Number(m.labels.layer),
        precision: String(m.labels.precision),
        sae_precision: String(m.labels.sae_precision),
        sae: String(m.labels.sae),
        expansion: Number(m.labels.expansion),
        ce_orig: NaN,
        ce_sae: NaN,
        ce_zero: NaN,
        ce_score: NaN,
        kl_sae: NaN,
        kl_zero: NaN,
        tokens: m.n,
      };
      byKey.set(k, r);
    }
    if ((SPLICE_METRICS as readonly string[]).includes(m.metric)) r[m.metric as (typeof SPLICE_METRICS)[number]] = m.value;
  }
  return [...byKey.values()];
}

/** The row of `sae` trained at `saePrecision`, spliced into the model at `precision` (own SAE: saePrecision = precision). */
export function findSplice(rows: SpliceRow[], where: { model: string; hook: string; layer: number; precision: string; sae: string }, saePrecision: string): SpliceRow | undefined {
  return rows.find((r) => r.model === where.model && r.hook === where.hook && r.layer === where.layer && r.precision === where.precision && r.sae === where.sae && r.sae_precision === saePrecision);
}
