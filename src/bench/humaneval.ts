// HumanEval: the official problem format, base-model completion cut at the Codex stop sequences (or
// the code block of a chat answer), execution of each program in a separate Python process
// (execute.ts), the unbiased pass@k. Execution overlaps generation: each batch's programs start as soon
// as the batch is generated.
import { InputError } from "../errors.js";
import { VERSION } from "../version.js";
import { PythonExecutor, type ExecutorOptions } from "./execute.js";
import { readJsonl, stringField } from "./io.js";
import { bootstrapInterval, passAtK, wilsonInterval } from "./stats.js";
import type { BenchItem, BenchResult, CommonOptions, CompletionFn } from "./types.js";

export interface HumanEvalProblem {
  task_id: string;
  prompt: string;
  canonical_solution?: string;
  test: string;
  entry_point: string;
}

export interface HumanEvalSample {
  task_id: string;
  completion: string;
}

/** Stop sequences of base-model completion (the Codex paper's, as the issue lists them). */
export const HUMANEVAL_STOP = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"];

/** Loads HumanEval.jsonl or .jsonl.gz; errors name the file and line. */
export function loadHumanEval(path: string): HumanEvalProblem[] {
  const seen = new Set<string>();
  return readJsonl(path, "HumanEval data file").map((l) => {
    const p: HumanEvalProblem = {
      task_id: stringField(path, l, "task_id", false),
      prompt: stringField(path, l, "prompt", false),
      test: stringField(path, l, "test", false),
      entry_point: stringField(path, l, "entry_point", false),
    };
    if (l.value.canonical_solution !== undefined) p.canonical_solution = stringField(path, l, "canonical_solution");
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(p.entry_point)) {
      throw new InputError(`${path}:${l.line}: entry_point "${p.entry_point}" is not a Python identifier`);
    }
    if (seen.has(p.task_id)) throw new InputError(`${path}:${l.line}: task_id "${p.task_id}" appears twice`);
    seen.add(p.task_id);
    return p;
  });
}

/** Loads a samples file (`task_id`, `completion` per line). */
export function loadHumanEvalSamples(path: string): (HumanEvalSample & { line: number })[] {
  return readJsonl(path, "samples file").map((l) => ({
    task_id: stringField(path, l, "task_id", false),
    completion: stringField(path, l, "completion"),
    line: l.line,
  }));
}

/** The program the official harness runs. */
export function humanEvalProgram(p: HumanEvalProblem, completion: string): string {
  return `${p.prompt}${completion}\n${p.test}\ncheck(${p.entry_point})\n`;
}

/**
 * A base-model prompt split into what the model is given and its trailing whitespace, which the model
 * generates itself: byte-level BPE merges a newline with the indentation after it, so a prompt that ends in
 * "\n" would end mid-token and the model would continue as if a column-0 line followed (bigcode's harness
 * strips HumanEval prompts for the same reason).
 */
export function splitPromptTail(prompt: string): { head: string; tail: string } {
  const head = prompt.replace(/\s+$/, "");
  return { head, tail: prompt.slice(head.length) };
}

/** What follows the original prompt, given a generation that continued the prompt's head. */
export function completionAfterTail(tail: string, generated: string): string {
  return generated.startsWith(tail) ? generated.slice(tail.length) : generated;
}

/** Cuts a base-model completion at the earliest stop sequence. */
export function truncateAtStop(text: string, stops: readonly string[] = HUMANEVAL_STOP): string {
  let cut = text.length;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && i < cut) cut = i;
  }
  return text.slice(0, cut);
}

/**
 * The code of a chat answer: the fenced block defining the entry point (else the first fenced block,
 * else the whole answer). A block with the full function is appended after the prompt on a new line
 * (Python keeps the later definition); a body-only block is used as the completion directly.
 */
export function extractCodeBlock(answer: string, entryPoint?: string): string {
  const blocks: string[] = [];
  const re = /```[ \t]*(?:python3?|py)?[^\n]*\n([\s\S]*?)(?:```|$)/gi;
  for (let m = re.exec(answer); m; m = re.exec(answer)) {
    blocks.push(m[1]);
    if (m[0].length === 0) re.lastIndex++;
  }
  let code = answer;
  if (blocks.length) {
    code = (entryPoint && blocks.find((b) => new RegExp(`\\bdef\\s+${entryPoint}\\s*\\(`).test(b))) || blocks[0];
  }
  if (/^\s*(from\s+\S+\s+import|import\s|def\s|class\s|@)/m.test(code) && !/^\s/.test(code.replace(/^\n+/, ""))) {
    return `\n${code.replace(/^\n+/, "")}`;
  }
  return code;
}

/** The user message of chat mode. */
export function humanEvalChatMessage(p: HumanEvalProblem): string {
  return (
    `Complete the following Python function. Reply with the complete function in one \`\`\`python code block.\n\n` +
    `\`\`\`python\n${p.prompt}\`\`\``
  );
}

export interface HumanEvalOptions extends CommonOptions, ExecutorOptions {
  /** Score these completions (a samples.jsonl path, or records) instead of generating. */
  samples?: string | HumanEvalSample[];
  /** Generates completions (needed without `samples`). */
  complete?: CompletionFn;
  /** The model is a chat model: prompts go in a user message and the code block is taken. */
  chat?: boolean;
  /** Samples per task (default 1); > 1 samples with `temperature` (default 0.8). */
  samplesPerTask?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  maxNewTokens?: number;
}

/** Runs HumanEval: generation (or given samples), execution, pass@k. */
export async function runHumanEval(opts: HumanEvalOptions): Promise<BenchResult> {
  const t0 = performance.now();
  let problems = loadHumanEval(opts.data);
  if (opts.limit !== undefined) problems = problems.slice(0, checkLimit(opts.limit));
  const byId = new Map(problems.map((p, i) => [p.task_id, { p, i }]));

  // Work list: (problem, completion) pairs, from the samples file or from the generator.
  const samplesFile = typeof opts.samples === "string" ? opts.samples : undefined;
  let given: { task_id: string; completion: string; line?: number }[] | undefined;
  if (opts.samples !== undefined) {
    given = typeof opts.samples === "string" ? loadHumanEvalSamples(opts.samples) : opts.samples;
    const unknown = given.find((s) => !byId.has(s.task_id));
    if (unknown && opts.limit === undefined) {
      const where = samplesFile ? `${samplesFile}:${(unknown as { line?: number }).line ?? "?"}` : "samples";
      throw new InputError(`${where}: task_id "${unknown.task_id}" is not in ${opts.data}`);
    }
    given = given.filter((s) => byId.has(s.task_id));
    const attempted = new Set(given.map((s) => s.task_id));
    const missing = problems.filter((p) => !attempted.has(p.task_id));
    if (missing.length > 0) {
      throw new InputError(
        `${samplesFile ?? "samples"}: ${missing.length} of ${problems.length} tasks have no completion (first: ${missing[0].task_id}); ` +
          `use --limit to score a prefix of the data`,
      );
    }
  } else if (!opts.complete && !(opts.model && opts.tokenizer)) {
    throw new TypeError("runHumanEval needs samples, a generator (complete), or a model and its tokenizer");
  }

  // Python first: a missing interpreter is reported before any generation starts.
  const exec = await PythonExecutor.create(opts);
  const nPer = given ? 0 : Math.max(1, opts.samplesPerTask ?? 1);
  const total = given ? given.length : problems.length * nPer;
  const items: (BenchItem & { order: number })[] = [];
  let executed = 0;
  const pending: Promise<void>[] = [];
  const submit = (p: HumanEvalProblem, completion: string, sample: number, order: number, finishReason?: string) => {
    pending.push(
      exec.run(humanEvalProgram(p, completion)).then((r) => {
        items.push({ id: p.task_id, passed: r.passed, result: r.result, completion, sample, order, ...(finishReason ? { finishReason } : {}) });
        executed++;
        opts.onProgress?.({ phase: "execute", done: executed, total });
      }),
    );
  };

  try {
    if (given) {
      const counts = new Map<string, number>();
      given.forEach((s, k) => {
        const { p, i } = byId.get(s.task_id)!;
        const j = counts.get(s.task_id) ?? 0;
        counts.set(s.task_id, j + 1);
        submit(p, s.completion, j, i * 1e6 + j + k * 0);
      });
    } else {
      const complete =
        opts.complete ?? (await import("./model.js")).modelCompletionFn(opts.model!, opts.tokenizer!, { batchSize: opts.batchSize });
      const batch = Math.max(1, opts.batchSize ?? 8);
      const temperature = nPer > 1 ? (opts.temperature ?? 0.8) : (opts.temperature ?? 0);
      const work: { p: HumanEvalProblem; i: number; j: number }[] = [];
      for (let j = 0; j < nPer; j++) problems.forEach((p, i) => work.push({ p, i, j }));
      let generated = 0;
      for (let b = 0; b < work.length; b += batch) {
        opts.signal?.throwIfAborted();
        const chunk = work.slice(b, b + batch);
        const split = chunk.map((w) => splitPromptTail(w.p.prompt));
        const prompts = chunk.map((w, k) => (opts.chat ? humanEvalChatMessage(w.p) : split[k].head));
        const outs = await complete(prompts, {
          maxNewTokens: opts.maxNewTokens ?? 512,
          temperature,
          topP: opts.topP,
          seed: opts.seed === undefined ? undefined : opts.seed + b,
          stop: opts.chat ? [] : HUMANEVAL_STOP,
          chat: opts.chat,
          signal: opts.signal,
        });
        if (outs.length !== chunk.length) throw new Error(`generator returned ${outs.length} completions for ${chunk.length} prompts`);
        chunk.forEach((w, k) => {
          const raw = outs[k].completion;
          const completion = opts.chat ? extractCodeBlock(raw, w.p.entry_point) : truncateAtStop(completionAfterTail(split[k].tail, raw));
          submit(w.p, completion, w.j, w.i * 1e6 + w.j, outs[k].finishReason);
        });
        generated += chunk.length;
        opts.onProgress?.({ phase: "generate", done: generated, total });
      }
    }
    await Promise.all(pending);
  } finally {
    exec.close();
  }

  items.sort((a, b) => a.order - b.order);
  const perTask = new Map<string, { n: number; c: number }>();
  for (const it of items) {
    const t = perTask.get(it.id) ?? { n: 0, c: 0 };
    t.n++;
    if (it.passed) t.c++;
    perTask.set(it.id, t);
  }
  const tasks = [...perTask.values()];
  const minN = Math.min(...tasks.map((t) => t.n));
  const passAt: Record<string, number> = {};
  for (const k of [1, 10, 100]) {
    if (k > minN) continue;
    passAt[`pass@${k}`] = tasks.reduce((s, t) => s + passAtK(t.n, t.c, k), 0) / tasks.length;
  }
  const perTask1 = tasks.map((t) => passAtK(t.n, t.c, 1));
  const oneEach = tasks.every((t) => t.n === 1);
  const score = passAt["pass@1"];
  const seconds = (performance.now() - t0) / 1000;
  return {
    task: "humaneval",
    metric: "pass@1",
    score,
    n: tasks.length,
    ci95: oneEach ? wilsonInterval(tasks.filter((t) => t.c > 0).length, tasks.length) : bootstrapInterval(perTask1),
    ciMethod: oneEach ? "wilson" : "bootstrap",
    passAtK: passAt,
    meta: {
      qsaeVersion: VERSION,
      date: new Date().toISOString(),
      data: opts.data,
      ...(samplesFile ? { samplesFile } : {}),
      ...opts.meta,
      settings: {
        limit: opts.limit ?? null,
        samplesPerTask: given ? null : nPer,
        temperature: given ? null : nPer > 1 ? (opts.temperature ?? 0.8) : (opts.temperature ?? 0),
        maxNewTokens: given ? null : (opts.maxNewTokens ?? 512),
        chat: !!opts.chat,
        timeoutMs: opts.timeoutMs ?? 3000,
        parallel: exec.parallel,
        networkIsolated: exec.networkIsolated,
        python: exec.python,
      },
      seconds,
      itemsPerSecond: items.length / Math.max(seconds, 1e-9),
    },
    items: items.map(({ order: _o, ...it }) => it),
  };
}

export function checkLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`Expected an integer >= 1 for limit but received ${limit}`);
  return limit;
}

/** samples.jsonl records of a HumanEval result (the official field names). */
export function humanEvalSamplesJsonl(r: BenchResult): string {
  return r.items.map((it) => JSON.stringify({ task_id: it.id, completion: it.completion ?? "", passed: it.passed, result: it.result })).join("\n") + "\n";
}
