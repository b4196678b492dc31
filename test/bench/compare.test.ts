// qsae bench compare: flips between two results, McNemar's exact p, side-by-side outputs.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import "./python.js";
import { describe, expect, it } from "vitest";

import { compareResults, loadResult, sideBySide } from "../../src/bench/compare.js";
import { loadHumanEval } from "../../src/bench/humaneval.js";
import { mcnemarExact } from "../../src/bench/stats.js";
import type { BenchItem, BenchResult } from "../../src/bench/types.js";
import { runCli } from "../helpers/cli.js";
import { repoRoot } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("qsae-bench-compare-");
const noAddon = { QSAE_ADDON: "/nonexistent/qsae.node" };
const item = (id: string, passed: boolean, completion = ""): BenchItem => ({ id, passed, result: passed ? "passed" : "failed: AssertionError", completion });

describe("bench compare", () => {
  it("counts flips both ways and computes McNemar's exact p", () => {
    const a = { task: "humaneval" as const, items: [item("t0", true), item("t1", true), item("t2", true), item("t3", false), item("t4", false), item("t5", true), item("only-a", true)] };
    const b = { task: "humaneval" as const, items: [item("t0", true), item("t1", false), item("t2", false), item("t3", true), item("t4", false), item("t5", false), item("only-b", false)] };
    const c = compareResults(a, b);
    expect(c.n).toBe(6);
    expect(c.passToFail.map((f) => f.id)).toEqual(["t1", "t2", "t5"]);
    expect(c.failToPass.map((f) => f.id)).toEqual(["t3"]);
    expect(c.bothPassed).toBe(1);
    expect(c.bothFailed).toBe(1);
    // b = 3, c = 1: 2 * (C(4,0) + C(4,1)) / 16 = 10/16
    expect(c.pValue).toBeCloseTo(10 / 16, 15);
    expect(c.onlyInA).toEqual(["only-a"]);
    expect(c.onlyInB).toEqual(["only-b"]);
    expect(() => compareResults(a, { task: "mmlu", items: [] })).toThrow(/cannot compare a humaneval result with a mmlu result/);
  });

  it("CLI: two --out runs of the bundled HumanEval, flipped items side by side", () => {
    const data = join(repoRoot, "data/tasks/humaneval.jsonl");
    const probs = loadHumanEval(data).slice(0, 8);
    const good = join(dir, "good.jsonl");
    const bad = join(dir, "bad.jsonl");
    writeFileSync(good, probs.map((p) => JSON.stringify({ task_id: p.task_id, completion: p.canonical_solution })).join("\n"));
    // B: tasks 1, 4, 6 truncated (like the seed's INT4 example); task 7 correct in both
    writeFileSync(bad, probs.map((p, i) => JSON.stringify({ task_id: p.task_id, completion: [1, 4, 6].includes(i) ? "    return" : p.canonical_solution })).join("\n"));
    for (const [name, file] of [["A", good], ["B", bad]]) {
      const r = runCli(["bench", "humaneval", "--data", data, "--samples", file, "--limit", "8", "--out", join(dir, name), "--timeout", "20"], { env: noAddon });
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
    }
    const j = runCli(["bench", "compare", join(dir, "A"), join(dir, "B"), "--json"], { env: noAddon });
    expect(j.stderr).toBe("");
    const c = JSON.parse(j.stdout);
    expect(c.passToFail).toEqual([probs[1].task_id, probs[4].task_id, probs[6].task_id]);
    expect(c.failToPass).toEqual([]);
    expect(c.pValue).toBeCloseTo(mcnemarExact(3, 0), 15);
    expect(c.scoreA).toBe(1);
    expect(c.scoreB).toBe(5 / 8);
    const t = runCli(["bench", "compare", join(dir, "A", "result.json"), join(dir, "B", "samples.jsonl"), "--width", "100", "--show", "2"], { env: noAddon });
    expect(t.status).toBe(0);
    expect(t.stdout).toMatch(/pass→fail 3, fail→pass 0/);
    expect(t.stdout).toMatch(/McNemar exact p = 0\.25/);
    expect(t.stdout).toContain(`── ${probs[1].task_id} (pass→fail) ──`);
    // the passing completion on the left, the truncated one on the right with its failure reason
    const firstLine = probs[1].canonical_solution!.split("\n")[0];
    expect(t.stdout).toMatch(new RegExp(`${firstLine.trim().replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}.*│ +return`));
    expect(t.stdout).toMatch(/\[passed\] +│ \[failed: /);
    expect(t.stdout).toMatch(/\(1 more pass→fail items; --show N to see them\)/);
  });

  it("loads results: folders, result.json, scored samples; errors name the file", () => {
    const r: Pick<BenchResult, "task" | "items"> = { task: "gsm8k", items: [item("0", true)] };
    const p = join(dir, "r.json");
    writeFileSync(p, JSON.stringify(r));
    expect(loadResult(p).items.length).toBe(1);
    writeFileSync(p, "{}");
    expect(() => loadResult(p)).toThrow(/r\.json: not a qsae bench result/);
    expect(() => loadResult(join(dir, "missing"))).toThrow(/missing: result not found/);
    const s = join(dir, "s.jsonl");
    writeFileSync(s, '{"subject":"anatomy","index":3,"answer":"B","passed":true}\n{"subject":"anatomy","index":4,"answer":"C"}\n');
    expect(() => loadResult(s)).toThrow(/s\.jsonl:2: missing boolean field "passed"/);
    expect(sideBySide("a\nbb", "c", 4, ["L", "R"]).split("\n")).toEqual(["L    │ R", "─────┼─────", "a    │ c", "bb   │"]);
  });
});
