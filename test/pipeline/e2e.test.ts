// `qsae run` end to end on a small real experiment (tiny GPT-2 and the official benchmark files with tiny
// limits): validation before any work, the splice stage's numbers against spliceEvalSae, resume, reruns of
// dependents only, and two shard processes on one RUNDIR giving the same results as one process.
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { stringify } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";

import { Model } from "../../src/model/model.js";
import { Tokenizer } from "../../src/model/tokenizer.js";
import type { ResultsFile } from "../../src/pipeline/results.js";
import { readPlan } from "../../src/pipeline/results.js";
import { readSaeIndex } from "../../src/pipeline/stages.js";
import { Sae } from "../../src/sae/index.js";
import { spliceEvalSae } from "../../src/sae/splice.js";
import { runCli } from "../helpers/cli.js";
import { haveShared, repoRoot, sharedPath, sharedSkipReason } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";
import { SMALL_PROMPTS, smallConfig } from "./small-run.js";

const dir = tempDir("qsae-e2e-");

function writeConfig(name: string, extra: Record<string, unknown> = {}): string {
  const c = smallConfig(dir, { benchmarks: { humaneval: { data: sharedPath("datasets/humaneval/HumanEval.jsonl.gz"), limit: 2, max_new_tokens: 8 } }, ...extra });
  const p = join(dir, name);
  writeFileSync(p, stringify(c));
  return p;
}

const ranCount = (stderr: string) => Number(/(\d+) cells run, (\d+) already done/.exec(stderr)?.[1] ?? NaN);
const comparable = (rundir: string) =>
  (JSON.parse(readFileSync(join(rundir, "results.json"), "utf8")) as ResultsFile).metrics.map((m) => ({ cell: m.cell, key: m.key, metric: m.metric, labels: m.labels, value: m.value, ci95: m.ci95 }));

describe.skipIf(!haveShared)(`qsae run (${haveShared ? "tiny-gpt2" : sharedSkipReason})`, () => {
  const config = join(dir, "exp.yaml");
  const rundir = join(dir, "run");
  let first: ReturnType<typeof runCli>;
  beforeAll(() => {
    writeConfig("exp.yaml");
    first = runCli(["run", config, "--out", rundir]);
  }, 600_000);

  it("runs every cell, prints the summary table and writes results, report and a run log", () => {
    expect(first.stderr).not.toMatch(/FAILED|✗/);
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(/benchmark\s+bf16\s+fp16\s+int8\s+nf4/);
    expect(first.stdout).toMatch(/sample correlation/);
    expect(first.stdout).toMatch(/SAE relu-x0\.5-l1_0\.0005-s0 spliced in\s+bf16\s+fp16\s+int8\s+nf4/);
    expect(first.stdout).toMatch(/loss recovered, own SAE .*%/);
    expect(first.stdout).toMatch(/loss recovered, bf16 SAE .*%/);
    expect(first.stdout).toContain(join(rundir, "report.html"));
    for (const f of ["results.json", "results.csv", "report.html", "run.log", "plan.json", "run-meta.json"]) expect(existsSync(join(rundir, f))).toBe(true);
    // plain progress lines when stderr is not a TTY
    expect(first.stderr).toMatch(/✓ extract:gpt2:nf4/);
    expect(readFileSync(join(rundir, "run.log"), "utf8")).toMatch(/done train:gpt2:bf16:resid_post\.0 in/);
    const meta = JSON.parse(readFileSync(join(rundir, "run-meta.json"), "utf8")) as Record<string, unknown>;
    expect(meta.torch_version).toMatch(/^\d/);
    expect(meta.finished).toBeDefined();
  });

  it("splices the reference's and each precision's own SAEs into each precision's model: the numbers spliceEvalSae gives", async () => {
    const results = JSON.parse(readFileSync(join(rundir, "results.json"), "utf8")) as ResultsFile;
    const sp = results.metrics.filter((m) => m.stage === "splice");
    // bf16: its 2 SAEs once (own = reference); fp16/int8/nf4: the bf16 SAEs and their own 2; 6 metrics each
    expect(sp).toHaveLength((2 + 3 * 4) * 6);
    for (const m of sp) {
      expect(Number.isFinite(m.value), `${m.cell} ${m.metric}`).toBe(true);
      expect(m.ci95).toBeNull();
      expect(m.n).toBeGreaterThan(0);
      expect(m.labels).toMatchObject({ model: "gpt2", hook: "resid_post", layer: 0, reference: "bf16" });
      expect(["bf16", m.labels.precision]).toContain(m.labels.sae_precision);
      if (m.metric.startsWith("kl_")) expect(m.value).toBeGreaterThanOrEqual(0);
    }
    const get = (precision: string, sae_precision: string, sae: string, metric: string) =>
      sp.filter((m) => m.labels.precision === precision && m.labels.sae_precision === sae_precision && m.labels.sae === sae && m.metric === metric);
    for (const sae of ["relu-x0.5-l1_0.0005-s0", "relu-x2-l1_0.0005-s0"])
      for (const p of ["bf16", "fp16", "int8", "nf4"]) {
        // the row the report shows as "own SAE" and the one it shows as "bf16 SAE"
        const own = get(p, p, sae, "ce_score");
        const ref = get(p, "bf16", sae, "ce_score");
        expect(own).toHaveLength(1);
        expect(ref).toHaveLength(1);
        if (p === "bf16") expect(own[0].value).toBe(ref[0].value);
        for (const sp2 of new Set(["bf16", p])) {
          const v = (k: string) => get(p, sp2, sae, k)[0].value;
          expect(v("ce_score")).toBeCloseTo((v("ce_zero") - v("ce_sae")) / (v("ce_zero") - v("ce_orig")), 10);
          // the clean and zero-ablated losses depend on the model and prompts only
          expect(v("ce_orig")).toBeCloseTo(get(p, "bf16", "relu-x0.5-l1_0.0005-s0", "ce_orig")[0].value, 9);
          expect(v("ce_zero")).toBeCloseTo(get(p, "bf16", "relu-x0.5-l1_0.0005-s0", "ce_zero")[0].value, 9);
        }
      }
    // fp16 runs the same weights as bf16 within rounding: the clean losses agree closely
    expect(get("fp16", "bf16", "relu-x2-l1_0.0005-s0", "ce_orig")[0].value).toBeCloseTo(get("bf16", "bf16", "relu-x2-l1_0.0005-s0", "ce_orig")[0].value, 2);

    // Recompute the nf4 cell's numbers with the API on the same prompts and SAE folders.
    const plan = readPlan(rundir);
    const trainDir = (p: string) => join(rundir, plan.cells.find((c) => c.id === `train:gpt2:${p}:resid_post.0`)!.dir);
    const model = await Model.load(sharedPath("models/tiny-gpt2"), { precision: "nf4" });
    try {
      const tok = await Tokenizer.fromModelDir(sharedPath("models/tiny-gpt2"));
      const ids = SMALL_PROMPTS.slice(0, 6).map((t) => tok.encode(t));
      for (const p of ["bf16", "nf4"]) {
        const entry = readSaeIndex(trainDir(p)).find((e) => e.expansion === 0.5)!;
        const sae = await Sae.load(join(trainDir(p), entry.folder));
        try {
          const r = await spliceEvalSae(model, sae, ids, { hook: "resid_post", layer: 0, maxLength: 24, batchSize: 6 });
          for (const k of ["ce_orig", "ce_sae", "ce_zero", "ce_score", "kl_sae", "kl_zero"] as const) expect(get("nf4", p, entry.name, k)[0].value, `${p} ${k}`).toBeCloseTo(r[k], 9);
          expect(get("nf4", p, entry.name, "ce_sae")[0].n).toBe(r.tokens);
        } finally {
          sae.dispose();
        }
      }
    } finally {
      model.dispose();
    }
  });

  it("a second run resumes: nothing to do", () => {
    const r = runCli(["run", config, "--out", rundir]);
    expect(r.status).toBe(0);
    expect(ranCount(r.stderr)).toBe(0);
  });

  it("a changed benchmark limit reruns only that benchmark's cells and their comparisons", () => {
    const changed = writeConfig("exp2.yaml", { benchmarks: { humaneval: { data: sharedPath("datasets/humaneval/HumanEval.jsonl.gz"), limit: 3, max_new_tokens: 8 } } });
    const r = runCli(["run", changed, "--out", rundir, "--log-json"]);
    expect(r.status).toBe(0);
    const started = r.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { type: string; cell?: string })
      .filter((e) => e.type === "start")
      .map((e) => e.cell!);
    expect(started.sort()).toEqual(
      ["bench:gpt2:bf16:humaneval", "bench:gpt2:fp16:humaneval", "bench:gpt2:int8:humaneval", "bench:gpt2:nf4:humaneval", "compare:gpt2:humaneval:bf16->fp16", "compare:gpt2:humaneval:bf16->int8", "compare:gpt2:humaneval:bf16->nf4"].sort(),
    );
  });

  it("--only runs one stage; --check validates and plans without running", () => {
    const r = runCli(["run", config, "--out", join(dir, "only"), "--only", "extract"]);
    expect(r.status).toBe(0);
    expect(ranCount(r.stderr)).toBe(4);
    const c = runCli(["run", config, "--out", rundir, "--check"]);
    expect(c.status).toBe(0);
    expect(c.stdout).toMatch(/config OK/);
    expect(c.stdout).toMatch(/cells: 4 extract, 4 train, 3 transfer, 3 align, 4 splice, 4 bench, 3 compare/);
    expect(c.stdout).toMatch(/12 prompts \(splice: the first 6\)/);
  });

  it("reports a bad config, a model folder that does not load and a missing data path before running anything", () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, stringify({ models: [dir], prompts: join(dir, "nope.txt"), precisions: ["bf16", "nf4"], benchmarks: { gsm8k: { data: join(dir, "missing.jsonl") } } }));
    const out = join(dir, "never");
    const r = runCli(["run", bad, "--out", out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/bad\.yaml: \d problem\(s\) found before running/);
    expect(r.stderr).toMatch(/models\[0\] .*config\.json: missing/);
    expect(r.stderr).toMatch(/prompts: .*nope\.txt/);
    expect(r.stderr).toMatch(/benchmarks\.gsm8k\.data: .*missing\.jsonl/);
    expect(existsSync(out)).toBe(false);
    const typo = join(dir, "typo.yaml");
    writeFileSync(typo, "models: [x]\nprompts: p.txt\nsae: { expansions: [0.5], l2: 3 }\n");
    const t = runCli(["run", typo, "--check"]);
    expect(t.status).toBe(1);
    expect(t.stderr).toMatch(/sae: unknown key 'l2'/);
  });

  it("two shard processes on one RUNDIR give the single-process results", async () => {
    const shared = join(dir, "sharded");
    const cfg = writeConfig("exp.yaml");
    const procs = [0, 1].map(
      (i) =>
        new Promise<{ code: number; stderr: string }>((res) => {
          const p = spawn(process.execPath, [join(repoRoot, "bin", "qsae.js"), "run", cfg, "--out", shared, "--shard", `${i}/2`], { cwd: repoRoot });
          let stderr = "";
          p.stderr.on("data", (d) => (stderr += d));
          p.stdout.resume();
          p.on("close", (code) => res({ code: code ?? -1, stderr }));
        }),
    );
    const outs = await Promise.all(procs);
    for (const o of outs) expect(o.code).toBe(0);
    // both did part of the work
    for (const o of outs) expect(ranCount(o.stderr)).toBeGreaterThan(0);
    expect(outs.map((o) => ranCount(o.stderr)).reduce((a, b) => a + b)).toBe(25);
    // the single-process run folder went through exp2 since; rerun exp.yaml there (resumes its cells) to compare
    expect(runCli(["run", cfg, "--out", rundir]).status).toBe(0);
    expect(comparable(shared)).toEqual(comparable(rundir));
  });
});
