// The bundled data (data/prompts, data/tasks): formats the loaders accept, the canonical HumanEval
// solutions pass, reference answers and keys score 1.0, and `qsae bench` uses them without --data.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import "./python.js";
import { describe, expect, it } from "vitest";

import { loadGsm8k } from "../../src/bench/gsm8k.js";
import { loadHumanEval, runHumanEval } from "../../src/bench/humaneval.js";
import { loadMmluCsv, mmluSubjects, runMmlu, selectSubjects } from "../../src/bench/mmlu.js";
import { readPrompts } from "../../src/model/prompts.js";
import { runCli } from "../helpers/cli.js";
import { repoRoot } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const tasks = join(repoRoot, "data", "tasks");
const dir = tempDir("qsae-bench-bundled-");
const noAddon = { QSAE_ADDON: "/nonexistent/qsae.node" };

describe("bundled data", () => {
  it("about 500 coding prompts in .jsonl and the instructions in .txt", async () => {
    const p = await readPrompts(join(repoRoot, "data/prompts/prompts.jsonl"));
    expect(p.length).toBeGreaterThanOrEqual(480);
    expect(new Set(p).size).toBe(p.length);
    expect(p[0]).toMatch(/^def \w+\(/);
    const t = await readPrompts(join(repoRoot, "data/prompts/instructions.txt"));
    expect(t.length).toBeGreaterThan(150);
    expect(t.every((s) => s.startsWith("Write a Python function "))).toBe(true);
  });

  it("HumanEval tasks: canonical solutions pass, and `qsae bench humaneval` defaults to them", async () => {
    const probs = loadHumanEval(join(tasks, "humaneval.jsonl"));
    expect(probs.length).toBeGreaterThanOrEqual(30);
    const samples = join(dir, "he.jsonl");
    writeFileSync(samples, probs.map((p) => JSON.stringify({ task_id: p.task_id, completion: p.canonical_solution })).join("\n"));
    const r = runCli(["bench", "humaneval", "--samples", samples, "--json", "--timeout", "20"], { env: noAddon });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toMatchObject({ task: "humaneval", score: 1, n: probs.length });
    // an empty body fails every task
    const none = await runHumanEval({ data: join(tasks, "humaneval.jsonl"), limit: 10, samples: probs.map((p) => ({ task_id: p.task_id, completion: "    pass\n" })), timeoutMs: 20_000 });
    expect(none.n).toBe(10);
    expect(none.score).toBe(0);
  });

  it("GSM8K tasks: 8 train shots available, reference answers score 1.0", () => {
    expect(loadGsm8k(join(tasks, "gsm8k/train.jsonl")).length).toBeGreaterThanOrEqual(8);
    const test = loadGsm8k(join(tasks, "gsm8k/test.jsonl"));
    expect(test.length).toBeGreaterThanOrEqual(25);
    const samples = join(dir, "gsm.jsonl");
    writeFileSync(samples, test.map((t, index) => JSON.stringify({ index, completion: t.answer })).join("\n"));
    const out = join(dir, "gsm-out");
    const r = runCli(["bench", "gsm8k", "--samples", samples, "--json", "--out", out], { env: noAddon });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toMatchObject({ task: "gsm8k", score: 1, n: test.length });
    const rows = readFileSync(join(out, "samples.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(rows[0]).toMatchObject({ index: 0, passed: true, result: "correct" });
  });

  it("MMLU tasks: the cs group and python_programming, answer keys score 1.0", async () => {
    const data = join(tasks, "mmlu");
    expect(mmluSubjects(data)).toContain("python_programming");
    expect(selectSubjects(data, ["cs"]).length).toBe(4);
    const keys = mmluSubjects(data).flatMap((s) => loadMmluCsv(join(data, "test", `${s}_test.csv`)).map((q, index) => ({ subject: s, index, answer: q.answer })));
    expect(keys.length).toBeGreaterThanOrEqual(40);
    for (const s of mmluSubjects(data)) expect(loadMmluCsv(join(data, "dev", `${s}_dev.csv`)).length).toBe(5);
    const r = await runMmlu({ data, samples: keys });
    expect(r.score).toBe(1);
    const allA = await runMmlu({ data, samples: keys.map((k) => ({ ...k, answer: "A" })) });
    expect(allA.score).toBe(0.25);
  });
});
