// spliceRows groups the splice stage's metrics into one row per (cell, site, SAE): one splice cell covers every
// layer of a model at one precision, so rows of different layers must not merge.
import { describe, expect, it } from "vitest";

import type { ResultRow } from "../../src/pipeline/results.js";
import { spliceRows, type ReportData } from "../../src/report/data.js";

function row(layer: number, saePrecision: string, metric: string, value: number): ResultRow {
  return {
    cell: "splice:m:nf4",
    key: "k",
    stage: "splice",
    metric,
    value,
    ci95: null,
    n: 100,
    labels: { model: "m", precision: "nf4", reference: "bf16", hook: "resid_post", layer, sae_precision: saePrecision, sae: "relu-x0.5", expansion: 0.5 },
  };
}

describe("spliceRows", () => {
  it("keeps one row per layer and SAE of a cell that covers several layers", () => {
    const metrics: ResultRow[] = [];
    for (const layer of [0, 2])
      for (const sp of ["bf16", "nf4"]) {
        metrics.push(row(layer, sp, "ce_score", 0.9 + layer / 100 + (sp === "nf4" ? 0.001 : 0)));
        metrics.push(row(layer, sp, "kl_sae", 0.1 * (layer + 1)));
      }
    const d = { results: { metrics } } as unknown as ReportData;
    const rows = spliceRows(d);
    expect(rows).toHaveLength(4);
    const find = (layer: number, sp: string) => rows.find((r) => r.layer === layer && r.sae_precision === sp)!;
    expect(find(0, "bf16").ce_score).toBeCloseTo(0.9, 12);
    expect(find(2, "bf16").ce_score).toBeCloseTo(0.92, 12);
    expect(find(2, "nf4").ce_score).toBeCloseTo(0.921, 12);
    expect(find(2, "nf4").kl_sae).toBeCloseTo(0.3, 12);
    expect(find(0, "nf4").precision).toBe("nf4");
  });
});
