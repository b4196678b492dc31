// Small real stages for testing the cell runner: a seeded data generator, a least-squares fit over it,
// and an evaluation that reads both. Each does actual computation on files, as pipeline stages do.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";


function lcg(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** @type {Record<string, import('../../src/pipeline/runner.js').StageFn>} */
export const fixtureStages = {
  // y = slope * x + noise, n points
  data: async (ctx) => {
    const { n, slope, seed } = ctx.cell.params;
    const r = lcg(seed);
    const rows = [];
    for (let i = 0; i < n; i++) {
      const x = r() * 10;
      rows.push([x, slope * x + (r() - 0.5)]);
      if (i % 100 === 0) ctx.progress({ done: i, total: n, unit: "rows" });
    }
    writeFileSync(join(ctx.dir, "data.json"), JSON.stringify(rows));
    return { metrics: [{ metric: "rows", value: n, ci95: null, labels: {} }] };
  },
  // slope through the origin by least squares
  fit: async (ctx) => {
    const rows = JSON.parse(readFileSync(join(ctx.input(ctx.cell.deps[0]), "data.json"), "utf8"));
    const { fail } = ctx.cell.params;
    writeFileSync(join(ctx.dir, "partial.txt"), "half-written");
    if (fail) throw new Error("fit: asked to fail");
    let sxy = 0;
    let sxx = 0;
    for (const [x, y] of rows) {
      sxy += x * y;
      sxx += x * x;
    }
    writeFileSync(join(ctx.dir, "fit.json"), JSON.stringify({ slope: sxy / sxx }));
    return { metrics: [{ metric: "slope", value: sxy / sxx, ci95: null, labels: {} }] };
  },
  // mean squared error of one fit on another data set, with a normal-approximation interval
  evaluate: async (ctx) => {
    const [fitId, dataId] = ctx.cell.deps;
    const { slope } = JSON.parse(readFileSync(join(ctx.input(fitId), "fit.json"), "utf8"));
    const rows = JSON.parse(readFileSync(join(ctx.input(dataId), "data.json"), "utf8"));
    const errs = rows.map(([x, y]) => (y - slope * x) ** 2);
    const mean = errs.reduce((a, b) => a + b, 0) / errs.length;
    const sd = Math.sqrt(errs.reduce((a, b) => a + (b - mean) ** 2, 0) / (errs.length - 1));
    const h = (1.96 * sd) / Math.sqrt(errs.length);
    return { metrics: [{ metric: "mse", value: mean, ci95: [mean - h, mean + h], n: errs.length, labels: {} }] };
  },
};

/** A grid: data sets A/B per seed, one fit per data set, each fit evaluated on every data set. */
/** @returns {import('../../src/pipeline/cells.js').CellSpec[]} */
export function fixtureSpecs(o = {}) {
  const seeds = o.seeds ?? [1, 2];
  const specs = [];
  const sets = [];
  for (const seed of seeds)
    for (const [name, slope] of [
      ["A", 2],
      ["B", o.slopeB ?? 3],
    ]) {
      const id = `data:${name}${seed}`;
      sets.push(`${name}${seed}`);
      specs.push({ id, stage: "data", deps: [], params: { n: o.n ?? 400, slope, seed }, labels: { set: `${name}${seed}` } });
      specs.push({ id: `fit:${name}${seed}`, stage: "fit", deps: [id], params: { fail: o.failFit === `${name}${seed}` }, labels: { set: `${name}${seed}` } });
    }
  for (const f of sets)
    for (const d of sets)
      specs.push({ id: `evaluate:${f}@${d}`, stage: "evaluate", deps: [`fit:${f}`, `data:${d}`], params: {}, labels: { fit: f, data: d } });
  return specs;
}
