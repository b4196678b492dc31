// qsae bench humaneval|gsm8k|mmlu|compare: capability benchmarks per precision, official formats and
// scoring; --samples scores given completions without loading a model (or libtorch).
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Argv, CommandModule } from "yargs";

import { InputError } from "../../src/errors.js";
import { compareResults, loadResult, sideBySide } from "../../src/bench/compare.js";
import { runGsm8k } from "../../src/bench/gsm8k.js";
import { humanEvalSamplesJsonl, runHumanEval } from "../../src/bench/humaneval.js";
import { writeFileAtomic } from "../../src/bench/io.js";
import { runMmlu } from "../../src/bench/mmlu.js";
import type { BenchProgress, BenchResult, ChoiceScorer, CompletionFn } from "../../src/bench/types.js";
import { formatTable, printJson } from "../output.js";
import { onInterrupt } from "../interrupt.js";

interface Args {
  model?: string;
  precision?: string;
  "compute-dtype"?: string;
  device?: string;
  data?: string;
  limit?: number;
  samples?: string;
  "max-new-tokens"?: number;
  "batch-size"?: number;
  json?: boolean;
  out?: string;
  chat?: boolean;
  shots?: number;
  subjects?: string[];
  "samples-per-task"?: number;
  temperature?: number;
  seed?: number;
  timeout?: number;
  parallel?: number;
}

type Task = "humaneval" | "gsm8k" | "mmlu";

/** The bundled task sets (data/tasks), used when --data is not given. */
function bundledData(task: Task): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, "data", "tasks"))) break;
    dir = dirname(dir);
  }
  const tasks = join(dir, "data", "tasks");
  return join(tasks, task === "humaneval" ? "humaneval.jsonl" : task === "gsm8k" ? "gsm8k/test.jsonl" : "mmlu");
}

function commonOptions(y: Argv<object>, task: Task): Argv<Args> {
  let a = y
    .option("model", { type: "string", description: "Model folder (Hugging Face layout); not needed with --samples" })
    .option("precision", { type: "string", choices: ["fp32", "bf16", "fp16", "int8", "nf4", "fp4"], description: "Load the model at this precision" })
    .option("compute-dtype", { type: "string", choices: ["fp32", "bf16", "fp16"], description: "Compute dtype of int8/nf4/fp4 layers" })
    .option("device", { type: "string", description: 'Device: "cpu" (default), "cuda", "cuda:N"' })
    .option("data", {
      type: "string",
      description:
        task === "humaneval"
          ? "HumanEval.jsonl or .jsonl.gz (default: the bundled data/tasks/humaneval.jsonl)"
          : task === "gsm8k"
            ? "GSM8K test.jsonl or its folder (train.jsonl beside it gives the shots; default: bundled)"
            : "MMLU folder with dev/ and test/ CSVs (default: bundled)",
    })
    .option("limit", { type: "number", description: task === "mmlu" ? "Only the first N questions of each subject" : "Only the first N items" })
    .option("samples", {
      type: "string",
      description:
        task === "humaneval"
          ? "Score these completions (JSONL: task_id, completion) instead of running a model"
          : task === "gsm8k"
            ? "Score these completions (JSONL: index, completion) instead of running a model"
            : "Score these answers (JSONL: subject, index, answer letter) instead of running a model",
    })
    .option("batch-size", { type: "number", default: 8, description: "Prompts per batch" })
    .option("json", { type: "boolean", description: 'Print {"task","metric","score","n","ci95"}' })
    .option("out", { type: "string", description: "Write result.json (and samples.jsonl) into this folder" });
  if (task !== "mmlu") {
    a = a
      .option("max-new-tokens", { type: "number", description: `Tokens to generate at most (default ${task === "humaneval" ? 512 : 256})` })
      .option("chat", { type: "boolean", description: "Chat model: prompt in a user message (HumanEval: the answer's code block is taken)" });
  }
  if (task !== "humaneval") a = a.option("shots", { type: "number", description: `Few-shot examples (default ${task === "gsm8k" ? 8 : 5})` });
  if (task === "mmlu") a = a.option("subjects", { type: "string", array: true, description: 'Subjects, or the group "cs" (default: all)' });
  if (task === "humaneval") {
    a = a
      .option("samples-per-task", { type: "number", default: 1, description: "Completions per task (pass@k; > 1 samples with --temperature)" })
      .option("temperature", { type: "number", description: "Sampling temperature (default 0 = greedy; 0.8 with --samples-per-task > 1)" })
      .option("seed", { type: "number", description: "Sampling seed" })
      .option("timeout", { type: "number", default: 3, description: "Seconds per test program" })
      .option("parallel", { type: "number", description: "Test programs run at once (default: the number of cores)" });
  }
  return a.strict() as unknown as Argv<Args>;
}

interface Loaded {
  completion?: CompletionFn;
  scorer?: ChoiceScorer;
  meta: { model: string; precision: string; computeDtype: string; device: string };
  dispose(): void;
}

async function loadModel(args: Args, task: Task): Promise<Loaded> {
  if (!args.model) throw new InputError(`qsae bench ${task}: give --model DIR (or --samples FILE to score given outputs)`);
  const { Model } = await import("../../src/model/model.js");
  const { Tokenizer } = await import("../../src/model/tokenizer.js");
  const { modelChoiceScorer, modelCompletionFn } = await import("../../src/bench/model.js");
  const tok = await Tokenizer.fromModelDir(args.model);
  const model = await Model.load(args.model, {
    precision: args.precision as never,
    computeDtype: args["compute-dtype"] as never,
    device: args.device,
  });
  return {
    completion: task === "mmlu" ? undefined : modelCompletionFn(model, tok, { batchSize: args["batch-size"] }),
    scorer: task === "mmlu" ? modelChoiceScorer(model, tok) : undefined,
    meta: { model: model.info.path, precision: model.info.precision, computeDtype: model.info.computeDtype, device: model.info.device },
    dispose: () => model.dispose(),
  };
}

async function makeProgress(task: Task, generating: boolean) {
  if (!process.stderr.isTTY) return { update: (_p: BenchProgress) => {}, stop: () => {} };
  const { default: cliProgress } = await import("cli-progress");
  // HumanEval overlaps generation and execution: the bar counts executed programs, the text the generated
  const format =
    task === "humaneval" && generating
      ? "{task} |{bar}| {value}/{total} run ({generated} generated)  {rate} items/s  eta {eta_formatted}"
      : "{task} |{bar}| {value}/{total} items  {rate} items/s  eta {eta_formatted}";
  const bar = new cliProgress.SingleBar({ stream: process.stderr, format, hideCursor: true, etaBuffer: 20 }, cliProgress.Presets.shades_classic);
  let t0 = 0;
  let started = false;
  let generated = 0;
  let done = 0;
  return {
    update(p: BenchProgress) {
      if (!started) {
        t0 = performance.now();
        bar.start(p.total, 0, { task, rate: "0.00", generated: 0 });
        started = true;
      }
      if (task === "humaneval" && p.phase === "generate") generated = p.done;
      else done = p.done;
      const rate = (done / Math.max(1e-3, (performance.now() - t0) / 1000)).toFixed(2);
      bar.setTotal(p.total);
      bar.update(done, { task, rate, generated });
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

function summary(r: BenchResult): string {
  const passed = r.task === "humaneval" ? Math.round(r.score * r.n) : r.items.filter((i) => i.passed).length;
  const lines = [
    `${r.task}  ${r.metric} = ${r.score.toFixed(4)}  (${r.task === "humaneval" && r.ciMethod === "bootstrap" ? `${r.n} tasks` : `${passed}/${r.n}`})  ` +
      `95% CI [${r.ci95[0].toFixed(3)}, ${r.ci95[1].toFixed(3)}] (${r.ciMethod === "wilson" ? "Wilson" : "bootstrap over tasks"})`,
  ];
  if (r.passAtK && Object.keys(r.passAtK).length > 1) {
    lines.push(Object.entries(r.passAtK).map(([k, v]) => `${k} = ${v.toFixed(4)}`).join("  "));
  }
  if (r.subjects && Object.keys(r.subjects).length > 1) {
    lines.push(
      "",
      formatTable(
        ["subject", "n", "correct", "accuracy"],
        Object.entries(r.subjects).map(([s, v]) => [s, v.n, v.correct, Number(v.accuracy.toFixed(4))]),
      ),
    );
  }
  if (r.task === "humaneval") {
    const reasons = new Map<string, number>();
    for (const it of r.items) {
      if (it.passed) continue;
      const k = it.result.replace(/^failed: ([A-Za-z_.]+).*$/, "$1");
      reasons.set(k, (reasons.get(k) ?? 0) + 1);
    }
    if (reasons.size) lines.push(`failure reasons: ${[...reasons].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ×${n}`).join(", ")}`);
  }
  lines.push(`${r.items.length} items in ${r.meta.seconds.toFixed(1)} s (${r.meta.itemsPerSecond.toFixed(2)} items/s)`);
  return lines.join("\n");
}

function writeOut(dir: string, r: BenchResult): void {
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(join(dir, "result.json"), `${JSON.stringify(r, null, 2)}\n`);
  let samples: string;
  if (r.task === "humaneval") samples = humanEvalSamplesJsonl(r);
  else if (r.task === "gsm8k") {
    samples = r.items.map((it) => JSON.stringify({ index: Number(it.id), completion: it.completion ?? "", answer: it.answer, reference: it.reference, passed: it.passed, result: it.result })).join("\n") + "\n";
  } else {
    samples = r.items
      .map((it) => {
        const j = it.id.lastIndexOf("/");
        return JSON.stringify({ subject: it.id.slice(0, j), index: Number(it.id.slice(j + 1)), answer: it.answer, reference: it.reference, passed: it.passed, result: it.result, ...(it.logprobs ? { logprobs: it.logprobs } : {}) });
      })
      .join("\n") + "\n";
  }
  writeFileAtomic(join(dir, "samples.jsonl"), samples);
}

function taskCommand(task: Task, describe: string): CommandModule<object, Args> {
  return {
    command: task,
    describe,
    builder: (y) => commonOptions(y, task),
    handler: async (args) => {
      const data = resolve(args.data ?? bundledData(task));
      const intr = onInterrupt("interrupted");
      const progress = await makeProgress(task, !args.samples);
      let loaded: Loaded | undefined;
      try {
        let r: BenchResult;
        const common = { data, limit: args.limit, batchSize: args["batch-size"], signal: intr.signal, onProgress: progress.update };
        if (!args.samples && task === "humaneval") {
          // python3 before the model: a missing interpreter is reported before any generation
          const { resolvePython } = await import("../../src/bench/execute.js");
          await resolvePython({});
        }
        if (!args.samples) loaded = await loadModel(args, task);
        const meta = loaded?.meta;
        if (task === "humaneval") {
          r = await runHumanEval({
            ...common,
            samples: args.samples,
            complete: loaded?.completion,
            chat: args.chat,
            samplesPerTask: args["samples-per-task"],
            temperature: args.temperature,
            seed: args.seed,
            maxNewTokens: args["max-new-tokens"],
            timeoutMs: (args.timeout ?? 3) * 1000,
            parallel: args.parallel,
            meta,
          });
        } else if (task === "gsm8k") {
          r = await runGsm8k({ ...common, samples: args.samples, complete: loaded?.completion, chat: args.chat, shots: args.shots, maxNewTokens: args["max-new-tokens"], meta });
        } else {
          r = await runMmlu({ ...common, samples: args.samples, scorer: loaded?.scorer, subjects: args.subjects, shots: args.shots, meta });
        }
        progress.stop();
        if (args.out) writeOut(resolve(args.out), r);
        if (args.json) printJson({ task: r.task, metric: r.metric, score: r.score, n: r.n, ci95: r.ci95 });
        else process.stdout.write(`${summary(r)}${args.out ? `\nwrote ${join(resolve(args.out), "result.json")} and samples.jsonl` : ""}\n`);
      } finally {
        progress.stop();
        intr.release();
        loaded?.dispose();
      }
    },
  };
}

interface CompareArgs {
  a: string;
  b: string;
  json?: boolean;
  show?: number;
  width?: number;
}

const compareCommand: CommandModule<object, CompareArgs> = {
  command: "compare <a> <b>",
  describe: "Items that flipped between two results (pass→fail, fail→pass), McNemar's exact p, outputs side by side",
  builder: (y) =>
    y
      .positional("a", { type: "string", demandOption: true, description: "Result A: an --out folder, result.json or scored samples.jsonl" })
      .positional("b", { type: "string", demandOption: true, description: "Result B (same task)" })
      .option("json", { type: "boolean", description: "Machine-readable output" })
      .option("show", { type: "number", default: 5, description: "Flipped items shown side by side (each direction)" })
      .option("width", { type: "number", description: "Total width of the side-by-side view (default: the terminal's)" })
      .strict() as unknown as Argv<CompareArgs>,
  handler: (args) => {
    const A = loadResult(args.a);
    const B = loadResult(args.b);
    const c = compareResults(A, B);
    if (args.json) {
      printJson({
        task: c.task,
        n: c.n,
        scoreA: c.scoreA,
        scoreB: c.scoreB,
        bothPassed: c.bothPassed,
        bothFailed: c.bothFailed,
        passToFail: c.passToFail.map((f) => f.id),
        failToPass: c.failToPass.map((f) => f.id),
        pValue: c.pValue,
        onlyInA: c.onlyInA,
        onlyInB: c.onlyInB,
      });
      return;
    }
    const label = (r: typeof A, p: string) => {
      const m = (r as BenchResult).meta;
      return m?.precision ? `${p} (${m.precision})` : p;
    };
    const la = label(A, "A");
    const lb = label(B, "B");
    const out: string[] = [
      `${c.task}: ${c.n} items in both   ${la} ${c.scoreA.toFixed(4)}   ${lb} ${c.scoreB.toFixed(4)}   Δ ${(c.scoreB - c.scoreA >= 0 ? "+" : "")}${(c.scoreB - c.scoreA).toFixed(4)}`,
      `both passed ${c.bothPassed}, both failed ${c.bothFailed}, pass→fail ${c.passToFail.length}, fail→pass ${c.failToPass.length}`,
      `McNemar exact p = ${c.pValue.toPrecision(4)}`,
    ];
    if (c.onlyInA.length || c.onlyInB.length) out.push(`not compared: ${c.onlyInA.length} only in A, ${c.onlyInB.length} only in B`);
    if (c.passToFail.length) out.push(`pass→fail: ${c.passToFail.map((f) => f.id).join(", ")}`);
    if (c.failToPass.length) out.push(`fail→pass: ${c.failToPass.map((f) => f.id).join(", ")}`);
    const total = Math.max(60, Math.min(args.width ?? process.stdout.columns ?? 160, 240));
    const w = Math.floor((total - 3) / 2);
    const show = Math.max(0, args.show ?? 5);
    for (const [title, flips] of [["pass→fail", c.passToFail], ["fail→pass", c.failToPass]] as const) {
      for (const f of flips.slice(0, show)) {
        const text = (it: typeof f.a) =>
          `${(it.completion ?? (it.answer != null ? `answer: ${it.answer}` : "")).trimEnd()}\n\n[${it.result}]`;
        out.push("", `── ${f.id} (${title}) ──`, sideBySide(text(f.a), text(f.b), w, [`${la}: ${f.a.passed ? "passed" : "failed"}`, `${lb}: ${f.b.passed ? "passed" : "failed"}`]));
      }
      if (flips.length > show) out.push("", `(${flips.length - show} more ${title} items; --show N to see them)`);
    }
    process.stdout.write(`${out.join("\n")}\n`);
  },
};

export const benchCommand: CommandModule<object, object> = {
  command: "bench",
  describe: "Capability benchmarks: HumanEval, GSM8K, MMLU (official scoring) and compare two results",
  builder: (y) =>
    y
      .command(taskCommand("humaneval", "HumanEval pass@k: generate, run the tests in separate python3 processes") as CommandModule)
      .command(taskCommand("gsm8k", "GSM8K accuracy: 8-shot chain of thought, the number after #### (else the last number)") as CommandModule)
      .command(taskCommand("mmlu", 'MMLU accuracy: 5-shot, highest next-token log-prob among " A"," B"," C"," D"') as CommandModule)
      .command(compareCommand as CommandModule)
      .demandCommand(1, "Name a benchmark: humaneval, gsm8k, mmlu or compare") as Argv<object>,
  handler: () => {},
};
