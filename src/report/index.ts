// qsae report: results.json/csv and a self-contained report.html from a run folder, and the compact
// terminal summary printed at the end of `qsae run`.
import { join, resolve } from "node:path";

import { writeResults } from "../pipeline/results.js";
import { writeFileAtomic } from "../pipeline/runner.js";
import type { ReportData } from "./data.js";
import { benchScores, gridNames, loadReportData, mean, spliceRows } from "./data.js";
import { renderReport } from "./html.js";

export { loadReportData } from "./data.js";
export type { ReportData, FlipSet, Flip, RunMeta } from "./data.js";
export { renderReport } from "./html.js";

export interface WriteReportResult {
  path: string;
  charts: number;
  complete: boolean;
  missing: string[];
}

/** Merges the finished cells of RUNDIR into results.json/csv and writes report.html (default RUNDIR/report.html). */
export async function writeReport(rundir: string, out?: string): Promise<WriteReportResult> {
  writeResults(rundir);
  const data = loadReportData(rundir);
  const { html, charts } = await renderReport(data);
  const path = resolve(out ?? join(rundir, "report.html"));
  writeFileAtomic(path, html);
  return { path, charts, complete: data.results.complete, missing: data.results.cells.missing };
}

function formatTable(header: string[], rows: string[][]): string {
  const cells = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

const p1 = (v: number | undefined | null) => (v === undefined || v === null || !Number.isFinite(v) ? "—" : `${(100 * v).toFixed(1)}%`);
const ci = (c: [number, number] | null | undefined) => (c ? `[${(100 * c[0]).toFixed(1)}, ${(100 * c[1]).toFixed(1)}]` : "");

/** A compact table of the headline numbers: benchmarks per precision, transfer and alignment per precision, loss recovered with the SAE spliced in. */
export function summaryTable(d: ReportData): string {
  const out: string[] = [];
  const scores = benchScores(d);
  if (scores.length) {
    const rows = [...new Set(scores.map((s) => `${s.model}\u0000${s.benchmark}`))].map((k) => {
      const [model, bench] = k.split("\u0000");
      return [`${model} ${bench}`, ...d.precisions.map((p) => {
        const s = scores.find((x) => x.model === model && x.benchmark === bench && x.precision === p);
        return s ? `${p1(s.score)} ${ci(s.ci95)}` : "—";
      })];
    });
    out.push(formatTable(["benchmark", ...d.precisions], rows));
  }
  const grid = gridNames(d);
  const main = grid[0]?.name;
  const t = d.results.metrics.filter((m) => m.stage === "transfer" && m.labels.sae === main && m.labels.reference === d.reference);
  const a = d.results.metrics.filter((m) => m.stage === "align" && m.labels.sae === main);
  const others = d.precisions.filter((p) => p !== d.reference);
  if (t.length || a.length) {
    const row = (label: string, rows: typeof t, metric: string) => [
      label,
      ...others.map((p) => {
        const xs = rows.filter((m) => m.labels.precision === p && m.metric === metric);
        if (xs.length === 1) return `${p1(xs[0].value)} ${ci(xs[0].ci95)}`;
        return xs.length ? `${p1(mean(xs.map((x) => x.value)))} (mean of ${xs.length})` : "—";
      }),
    ];
    out.push(
      formatTable(
        [`SAE ${main ?? ""}`, ...others.map((p) => `${d.reference}→${p}`)],
        [row("sample correlation", t, "sample_correlation"), row("feature correlation", t, "feature_correlation"), row("top-k agreement", t, "topk_agreement"), row("Procrustes alignment", a, "procrustes_alignment")],
      ),
    );
  }
  const sp = spliceRows(d).filter((r) => r.sae === main && Number.isFinite(r.ce_score));
  if (sp.length) {
    const cols = d.precisions.filter((p) => sp.some((r) => r.precision === p));
    const row = (label: string, pick: (p: string) => typeof sp, f: (v: number) => string, key: "ce_score" | "kl_sae") => [
      label,
      ...cols.map((p) => {
        const xs = pick(p).map((r) => r[key]);
        if (xs.length === 0) return "—";
        return xs.length === 1 ? f(xs[0]) : `${f(mean(xs))} (mean of ${xs.length})`;
      }),
    ];
    const own = (p: string) => sp.filter((r) => r.precision === p && r.sae_precision === p);
    const fromRef = (p: string) => sp.filter((r) => r.precision === p && r.sae_precision === d.reference);
    const kl = (v: number) => v.toPrecision(3);
    out.push(
      formatTable(
        [`SAE ${main} spliced in`, ...cols],
        [row("loss recovered, own SAE", own, p1, "ce_score"), row(`loss recovered, ${d.reference} SAE`, fromRef, p1, "ce_score"), row(`KL, ${d.reference} SAE (nats/token)`, fromRef, kl, "kl_sae")],
      ),
    );
  }
  if (!d.results.complete) out.push(`${d.results.cells.missing.length} of ${d.results.cells.total} cells are not done: ${d.results.cells.missing.slice(0, 5).join(", ")}${d.results.cells.missing.length > 5 ? ", …" : ""}`);
  return out.join("\n\n");
}
