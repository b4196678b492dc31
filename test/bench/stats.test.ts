// pass@k, Wilson intervals and McNemar's exact test against scipy/numpy values (fixtures/make_reference.py)
// and hand-computed binomial sums.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { bootstrapInterval, mcnemarExact, passAtK, wilsonInterval } from "../../src/bench/stats.js";
import { repoRoot } from "../helpers/shared.js";

const ref = JSON.parse(readFileSync(join(repoRoot, "test/bench/fixtures/reference.json"), "utf8")) as {
  mcnemar: { b: number; c: number; p: number }[];
  wilson: { k: number; n: number; lo: number; hi: number }[];
  passAtK: { n: number; c: number; k: number; p: number }[];
};

describe("bench statistics", () => {
  it("McNemar's exact p matches scipy.stats.binomtest", () => {
    for (const r of ref.mcnemar) expect(mcnemarExact(r.b, r.c)).toBeCloseTo(r.p, 12);
    expect(ref.mcnemar.length).toBeGreaterThan(10);
  });

  it("McNemar's exact p matches hand-computed binomial sums", () => {
    // b=5, c=1: 2 * (C(6,0) + C(6,1)) / 2^6 = 2 * 7 / 64
    expect(mcnemarExact(5, 1)).toBeCloseTo((2 * 7) / 64, 15);
    // b=2, c=8: 2 * (1 + 10 + 45) / 1024
    expect(mcnemarExact(2, 8)).toBeCloseTo((2 * 56) / 1024, 15);
    expect(mcnemarExact(0, 0)).toBe(1);
    expect(mcnemarExact(4, 4)).toBe(1);
    // very large counts go through log space and stay finite and symmetric
    expect(mcnemarExact(1500, 1400)).toBeCloseTo(mcnemarExact(1400, 1500), 14);
    expect(mcnemarExact(1500, 1400)).toBeGreaterThan(0);
    expect(mcnemarExact(1500, 1400)).toBeLessThan(0.1);
  });

  it("Wilson intervals match scipy's binomtest(...).proportion_ci(method='wilson')", () => {
    for (const r of ref.wilson) {
      const [lo, hi] = wilsonInterval(r.k, r.n);
      expect(lo).toBeCloseTo(r.lo, 10);
      expect(hi).toBeCloseTo(r.hi, 10);
    }
  });

  it("pass@k matches the HumanEval paper's numpy estimator", () => {
    for (const r of ref.passAtK) expect(passAtK(r.n, r.c, r.k)).toBeCloseTo(r.p, 12);
    expect(() => passAtK(3, 1, 5)).toThrow(/pass@5 needs at least 5 samples/);
  });

  it("bootstrap interval brackets the mean and is deterministic", () => {
    const v = Array.from({ length: 50 }, (_, i) => (i % 3 === 0 ? 1 : i % 3 === 1 ? 0.5 : 0));
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const [lo, hi] = bootstrapInterval(v);
    expect(lo).toBeLessThan(mean);
    expect(hi).toBeGreaterThan(mean);
    expect(bootstrapInterval(v)).toEqual([lo, hi]);
  });
});
