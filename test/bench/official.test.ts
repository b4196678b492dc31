// The harness on the official data (../shared/datasets): canonical HumanEval solutions pass all 164
// tasks, GSM8K reference answers and MMLU answer keys score 1.0, wrong answers score less, and the
// --samples modes never load libtorch.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import "./python.js";
import { describe, expect, it } from "vitest";

import { loadGsm8k, runGsm8k } from "../../src/bench/gsm8k.js";
import { loadHumanEval, runHumanEval } from "../../src/bench/humaneval.js";
import { loadMmluCsv, mmluSubjects, runMmlu } from "../../src/bench/mmlu.js";
import { runCli } from "../helpers/cli.js";
import { sharedDir, sharedPath } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";
import { existsSync } from "node:fs";

const haveData = existsSync(join(sharedDir, "datasets"));
if (!haveData) console.warn(`qsae tests: ${sharedDir}/datasets not found: official-data bench tests skipped`);
const dir = tempDir("qsae-bench-official-");
const HE = sharedPath("datasets/humaneval/HumanEval.jsonl.gz");
const GSM = sharedPath("datasets/gsm8k/test.jsonl");
const MMLU = sharedPath("datasets/mmlu");
const noAddon = { QSAE_ADDON: "/nonexistent/qsae.node" };
const jsonl = (name: string, rows: unknown[]) => {
  const p = join(dir, name);
  writeFileSync(p, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return p;
};

describe.skipIf(!haveData)("bench on the official data", () => {
  it("HumanEval: the canonical solutions pass all 164 tasks (CLI --samples, no libtorch)", () => {
    const probs = loadHumanEval(HE);
    expect(probs.length).toBe(164);
    const samples = jsonl("canonical.jsonl", probs.map((p) => ({ task_id: p.task_id, completion: p.canonical_solution })));
    const out = join(dir, "he-canonical");
    // a generous timeout: the 2-core CI machine is shared, and this checks the harness, not speed
    const r = runCli(["bench", "humaneval", "--data", HE, "--samples", samples, "--json", "--out", out, "--timeout", "20"], { env: noAddon });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ task: "humaneval", metric: "pass@1", score: 1, n: 164 });
    expect(j.ci95[1]).toBeCloseTo(1, 12);
    expect(j.ci95[0]).toBeGreaterThan(0.97);
    const rows = readFileSync(join(out, "samples.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(rows.length).toBe(164);
    expect(rows.every((x) => x.passed === true && x.result === "passed")).toBe(true);
    expect(Object.keys(rows[0]).sort()).toEqual(["completion", "passed", "result", "task_id"]);
    const res = JSON.parse(readFileSync(join(out, "result.json"), "utf8"));
    expect(res.items.length).toBe(164);
    expect(res.meta.samplesFile).toBe(samples);
  });

  it("HumanEval: wrong completions fail with their reasons recorded", async () => {
    const probs = loadHumanEval(HE).slice(0, 12);
    const bad = probs.map((p, i) => ({
      task_id: p.task_id,
      completion: i % 4 === 0 ? "    return None\n" : i % 4 === 1 ? "    while True:\n        pass\n" : i % 4 === 2 ? "    return (\n" : p.canonical_solution!,
    }));
    const r = await runHumanEval({ data: HE, samples: bad, limit: 12, timeoutMs: 1500 });
    expect(r.n).toBe(12);
    expect(r.score).toBeCloseTo(3 / 12, 12);
    const by = (i: number) => r.items[i].result;
    expect(by(1)).toBe("timed out");
    expect(by(2)).toMatch(/^failed: SyntaxError/);
    expect(by(3)).toBe("passed");
    expect(r.items.filter((x) => x.result.startsWith("failed: ")).length).toBeGreaterThanOrEqual(6);
  });

  it("GSM8K: the reference answers score 1.0; wrong numbers score less", async () => {
    const data = loadGsm8k(GSM);
    expect(data.length).toBe(1319);
    const right = jsonl("gsm-right.jsonl", data.map((d, index) => ({ index, completion: d.answer })));
    const r = runCli(["bench", "gsm8k", "--data", GSM, "--samples", right, "--json"], { env: noAddon });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toMatchObject({ task: "gsm8k", metric: "accuracy", score: 1, n: 1319 });
    // the reference reasoning without the "#### N" line: the last number is the answer, still 1.0
    const noHash = await runGsm8k({ data: GSM, samples: data.map((d, index) => ({ index, completion: d.answer.replace(/\n####.*$/, "") })) });
    expect(noHash.score).toBeGreaterThan(0.97);
    // one in five answers off by one
    const wrong = data.map((d, index) => ({ index, completion: index % 5 === 0 ? `#### ${Number(d.reference) + 1}` : `The answer is ${d.reference}.` }));
    const w = await runGsm8k({ data: GSM, samples: wrong });
    expect(w.score).toBeCloseTo(1 - Math.ceil(1319 / 5) / 1319, 12);
    expect(w.items[0].result).toMatch(/^wrong: got \d+, expected \d+/);
  });

  it("MMLU: the answer keys score 1.0 on all 14,042 questions; shifted letters score 0", async () => {
    const subjects = mmluSubjects(MMLU);
    expect(subjects.length).toBe(57);
    const keys: { subject: string; index: number; answer: string }[] = [];
    for (const s of subjects) loadMmluCsv(join(MMLU, "test", `${s}_test.csv`)).forEach((q, index) => keys.push({ subject: s, index, answer: q.answer }));
    expect(keys.length).toBe(14042);
    const p = jsonl("mmlu-keys.jsonl", keys);
    const r = runCli(["bench", "mmlu", "--data", MMLU, "--samples", p, "--json"], { env: noAddon });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toMatchObject({ task: "mmlu", metric: "accuracy", score: 1, n: 14042 });
    const shift = (a: string) => "ABCD"[("ABCD".indexOf(a) + 1) % 4];
    const w = await runMmlu({ data: MMLU, samples: keys.map((k) => ({ ...k, answer: shift(k.answer) })) });
    expect(w.score).toBe(0);
    // cs group: the four subjects of the seed's MMLU-CS, all "A"
    const cs = await runMmlu({ data: MMLU, subjects: ["cs"], samples: keys.map((k) => ({ ...k, answer: "A" })) });
    expect(Object.keys(cs.subjects!)).toEqual(["college_computer_science", "high_school_computer_science", "computer_security", "machine_learning"]);
    expect(cs.score).toBeGreaterThan(0.1);
    expect(cs.score).toBeLessThan(0.5);
  });

  it("bad samples files name the file and line", () => {
    const p = join(dir, "bad.jsonl");
    writeFileSync(p, '{"subject":"anatomy","index":0,"answer":"A"}\n{"subject":"anatomy","index":1,"answer":"maybe"}\n');
    const r = runCli(["bench", "mmlu", "--data", MMLU, "--samples", p], { env: noAddon });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`qsae: ${p}:2: the answer must be one of the letters A, B, C, D but is "maybe"`);
    writeFileSync(p, '{"index":0,"completion":"#### 3"}\n{"index":1 "completion":"x"}\n');
    const g = runCli(["bench", "gsm8k", "--data", GSM, "--samples", p], { env: noAddon });
    expect(g.status).toBe(1);
    expect(g.stderr).toMatch(new RegExp(`^qsae: ${p.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:2: bad JSON`));
    writeFileSync(p, '{"task_id":"HumanEval/0"}\n');
    const h = runCli(["bench", "humaneval", "--data", HE, "--samples", p], { env: noAddon });
    expect(h.stderr.trim()).toBe(`qsae: ${p}:1: missing field "completion"`);
  });
});
