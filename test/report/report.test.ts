// The report of a small real run: results.json/csv with intervals, a self-contained report.html whose
// charts render in a real browser (headless Chromium via playwright-core) without console errors.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { beforeAll, describe, expect, it } from "vitest";

import { parseConfig } from "../../src/pipeline/config.js";
import { runExperiment } from "../../src/pipeline/index.js";
import type { ResultsFile } from "../../src/pipeline/results.js";
import { loadReportData, summaryTable } from "../../src/report/index.js";
import { runCli } from "../helpers/cli.js";
import { haveShared, sharedSkipReason } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";
import { smallConfig } from "../pipeline/small-run.js";

const CHROMIUM = "/usr/bin/chromium";
const dir = tempDir("qsae-report-");
const rundir = join(dir, "run");

describe.skipIf(!haveShared)(`report of a small run (${haveShared ? "tiny-gpt2" : sharedSkipReason})`, () => {
  let results: ResultsFile;
  let html: string;
  beforeAll(async () => {
    const r = await runExperiment(parseConfig(smallConfig(dir), dir), { out: rundir });
    expect(r.reportPath).toBe(join(rundir, "report.html"));
    results = JSON.parse(readFileSync(join(rundir, "results.json"), "utf8")) as ResultsFile;
    html = readFileSync(join(rundir, "report.html"), "utf8");
  }, 600_000);

  it("results.json holds every metric with its cell key and, where computed, a 95% interval", () => {
    expect(results.complete).toBe(true);
    const stages = new Set(results.metrics.map((m) => m.stage));
    expect([...stages].sort()).toEqual(["align", "bench", "compare", "extract", "splice", "train", "transfer"]);
    for (const m of results.metrics) {
      expect(m.key).toMatch(/^[0-9a-f]{64}$/);
      expect(Number.isFinite(m.value)).toBe(true);
    }
    const bench = results.metrics.filter((m) => m.stage === "bench" && (m.metric === "pass@1" || m.metric === "accuracy") && !m.labels.subject);
    expect(bench).toHaveLength(12);
    for (const b of bench) {
      expect(b.ci95).not.toBeNull();
      expect(b.ci95![0]).toBeLessThanOrEqual(b.value + 1e-12);
      expect(b.ci95![1]).toBeGreaterThanOrEqual(b.value - 1e-12);
    }
    const sc = results.metrics.filter((m) => m.stage === "transfer" && m.metric === "sample_correlation");
    expect(sc).toHaveLength(3 * 2); // 3 precisions vs bf16 × 2 SAE sizes
    for (const s of sc) {
      expect(s.ci95![0]).toBeLessThanOrEqual(s.value + 1e-12);
      expect(s.value).toBeGreaterThan(0.5);
    }
    // fp16 activations are within rounding of bf16's: the bf16 SAE transfers almost perfectly
    expect(sc.find((s) => s.labels.precision === "fp16" && s.labels.expansion === 0.5)!.value).toBeGreaterThan(0.95);
    const csv = readFileSync(join(rundir, "results.csv"), "utf8").trimEnd().split("\n");
    expect(csv[0]).toMatch(/^stage,cell,key,model,precision,.*metric,value,ci95_lo,ci95_hi,n$/);
    expect(csv).toHaveLength(results.metrics.length + 1);
  });

  it("report.html is self-contained: inline CSS and SVG, no scripts, no external resources", () => {
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/(src|href)\s*=\s*["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/@import|url\(\s*["']?https?:/i);
    expect(html).not.toMatch(/<link[^>]+stylesheet/i);
    for (const s of ["Degradation per benchmark", "SAE transfer across precisions", "Loss recovered when the SAE is spliced in", "SAE size", "Run metadata"]) expect(html).toContain(s);
    // the nf4 row of the splice table: nf4's own SAE and the bf16 SAE, as in results.json
    const ce = (sp: string) => results.metrics.find((m) => m.stage === "splice" && m.metric === "ce_score" && m.labels.precision === "nf4" && m.labels.sae_precision === sp && m.labels.expansion === 0.5)!.value;
    const row = html.match(/<tr><td[^>]*>resid_post\.0<\/td><td[^>]*>nf4<\/td><td[^>]*><span class="mono"[^>]*>relu-x0\.5-l1_0\.0005-s0<\/span><\/td>.*?<\/tr>/)?.[0];
    expect(row).toBeDefined();
    expect(row).toContain(`${(100 * ce("nf4")).toFixed(1)}%`);
    expect(row).toContain(`${(100 * ce("bf16")).toFixed(1)}%`);
    // the bf16 HumanEval score shown equals results.json's
    const he = results.metrics.find((m) => m.stage === "bench" && m.labels.benchmark === "humaneval" && m.labels.precision === "bf16")!;
    expect(html).toContain(`${(100 * he.value).toFixed(1)}%`);
    expect(html).toContain(results.metrics.find((m) => m.stage === "extract")!.labels.model as string);
  });

  it("prints a compact summary table", () => {
    const t = summaryTable(loadReportData(rundir));
    expect(t).toMatch(/benchmark\s+bf16\s+fp16\s+int8\s+nf4/);
    expect(t).toMatch(/gpt2 humaneval/);
    expect(t).toMatch(/sample correlation/);
    expect(t).toMatch(/spliced in\s+bf16\s+fp16\s+int8\s+nf4\nloss recovered, own SAE .*\nloss recovered, bf16 SAE .*\nKL, bf16 SAE/);
  });

  it("qsae report RUNDIR --out FILE rewrites the report", () => {
    const out = join(dir, "copy.html");
    const r = runCli(["report", rundir, "--out", out]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(out);
    expect(readFileSync(out, "utf8")).toBe(html);
    const bad = runCli(["report", dir]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/not a qsae run folder \(no plan\.json/);
  });

  it.skipIf(!existsSync(CHROMIUM))("renders every chart in headless Chromium without console errors", async () => {
    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      const errors: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      page.on("pageerror", (e) => errors.push(e.message));
      page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()}`));
      await page.goto(`file://${join(rundir, "report.html")}`);
      // open every section so that every chart is laid out
      await page.evaluate(() => document.querySelectorAll("details").forEach((d) => d.setAttribute("open", "")));
      const charts = await page.$$eval("figure.chart", (figs) =>
        figs.map((f) => {
          const svg = f.querySelector("svg");
          const box = svg?.getBoundingClientRect();
          return { svg: !!svg, w: box?.width ?? 0, h: box?.height ?? 0, marks: svg ? svg.querySelectorAll("path, rect, line, circle, text").length : 0 };
        }),
      );
      expect(charts.length).toBeGreaterThanOrEqual(3);
      expect(charts.length).toBe((html.match(/<figure class="chart"/g) ?? []).length);
      for (const c of charts) {
        expect(c.svg).toBe(true);
        expect(c.w).toBeGreaterThan(50);
        expect(c.h).toBeGreaterThan(50);
        expect(c.marks).toBeGreaterThan(10);
      }
      const shot = join(dir, "report.png");
      await page.screenshot({ path: shot, fullPage: true });
      expect(readFileSync(shot).subarray(1, 4).toString()).toBe("PNG");
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
