// GSM8K: the official JSONL format (question, answer ending in "#### N"), 8-shot chain-of-thought
// prompts "Question: … Answer: …" from train.jsonl, answer extraction (the number after ####, else the
// last number) and numeric comparison.
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

import { InputError } from "../errors.js";
import { VERSION } from "../version.js";
import { checkLimit } from "./humaneval.js";
import { indexField, readJsonl, stringField } from "./io.js";
import { wilsonInterval } from "./stats.js";
import type { BenchItem, BenchResult, CommonOptions, CompletionFn } from "./types.js";

export interface Gsm8kItem {
  question: string;
  answer: string;
  /** The number after "####" in the answer, commas removed. */
  reference: string;
}

const NUMBER = /-?\d[\d,]*(?:\.\d+)?|-?\.\d+/g;

/** Loads GSM8K JSONL; each answer must end in "#### N". */
export function loadGsm8k(path: string): Gsm8kItem[] {
  return readJsonl(path, "GSM8K data file").map((l) => {
    const question = stringField(path, l, "question", false);
    const answer = stringField(path, l, "answer", false);
    const m = /####\s*(.+?)\s*$/.exec(answer);
    const ref = m ? normalizeNumber(m[1]) : null;
    if (ref === null) throw new InputError(`${path}:${l.line}: the answer does not end in "#### <number>"`);
    return { question, answer, reference: ref };
  });
}

/** Strips "$", commas and a trailing period; null when what is left is not a number. */
export function normalizeNumber(s: string): string | null {
  const t = s.trim().replace(/[$,]/g, "").replace(/\.$/, "");
  return /^-?(\d+(\.\d*)?|\.\d+)$/.test(t) ? t : null;
}

/** The answer of a completion: the number after "####" if there is one, else the last number. */
export function extractGsm8kAnswer(completion: string): string | null {
  const hash = completion.indexOf("####");
  if (hash >= 0) {
    const after = completion.slice(hash + 4).replace(/\$/g, "");
    const m = after.match(NUMBER);
    if (m) return normalizeNumber(m[0]);
  }
  const all = completion.replace(/\$/g, "").match(NUMBER);
  return all ? normalizeNumber(all[all.length - 1]) : null;
}

export function gsm8kCorrect(extracted: string | null, reference: string): boolean {
  if (extracted === null) return false;
  const a = Number(extracted);
  const b = Number(reference);
  return Number.isFinite(a) && Number.isFinite(b) && Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));
}

/** The few-shot chain-of-thought prompt ("Question: …\nAnswer: …\n\n" per shot, then the question). */
export function gsm8kPrompt(shots: Gsm8kItem[], question: string): string {
  let s = "";
  for (const x of shots) s += `Question: ${x.question}\nAnswer: ${x.answer}\n\n`;
  return `${s}Question: ${question}\nAnswer:`;
}

export const GSM8K_STOP = ["Question:", "\n\n\n"];

/** test.jsonl (and train.jsonl beside it) from a file or a folder. */
export function resolveGsm8kFiles(data: string, train?: string): { test: string; train: string | undefined } {
  if (!existsSync(data)) throw new InputError(`${data}: GSM8K data not found`);
  const test = statSync(data).isDirectory() ? join(data, "test.jsonl") : data;
  if (!existsSync(test)) throw new InputError(`${data}: no test.jsonl in this folder`);
  const tr = train ?? join(dirname(test), "train.jsonl");
  return { test, train: existsSync(tr) ? tr : train };
}

export interface Gsm8kOptions extends CommonOptions {
  /** Score these completions (a JSONL path with `index` and `completion`, or records) instead of generating. */
  samples?: string | { index: number; completion: string }[];
  complete?: CompletionFn;
  /** Few-shot examples (default 8) taken from the start of `train`. */
  shots?: number;
  /** The train file (default: train.jsonl beside the test file). */
  train?: string;
  chat?: boolean;
  maxNewTokens?: number;
}

export async function runGsm8k(opts: Gsm8kOptions): Promise<BenchResult> {
  const t0 = performance.now();
  const files = resolveGsm8kFiles(opts.data, opts.train);
  let data = loadGsm8k(files.test);
  if (opts.limit !== undefined) data = data.slice(0, checkLimit(opts.limit));
  const items: BenchItem[] = [];
  const score = (index: number, completion: string, finishReason?: string) => {
    const got = extractGsm8kAnswer(completion);
    const ref = data[index].reference;
    const passed = gsm8kCorrect(got, ref);
    items.push({
      id: String(index),
      passed,
      result: passed ? "correct" : got === null ? "wrong: no number found" : `wrong: got ${got}, expected ${ref}`,
      completion,
      answer: got,
      reference: ref,
      ...(finishReason ? { finishReason } : {}),
    });
  };

  const samplesFile = typeof opts.samples === "string" ? opts.samples : undefined;
  let shots = 0;
  let minShots = Infinity;
  if (opts.samples !== undefined) {
    const recs =
      typeof opts.samples === "string"
        ? readJsonl(opts.samples, "samples file").map((l) => ({
            index: indexField(samplesFile!, l, "index"),
            completion: stringField(samplesFile!, l, "completion"),
            line: l.line as number | undefined,
          }))
        : opts.samples.map((s) => ({ ...s, line: undefined as number | undefined }));
    const seen = new Set<number>();
    for (const r of recs) {
      if (r.index >= data.length) {
        if (opts.limit !== undefined) continue;
        throw new InputError(`${samplesFile ?? "samples"}:${r.line ?? "?"}: index ${r.index} is past the end of ${files.test} (${data.length} questions)`);
      }
      if (seen.has(r.index)) throw new InputError(`${samplesFile ?? "samples"}:${r.line ?? "?"}: index ${r.index} appears twice`);
      seen.add(r.index);
      score(r.index, r.completion);
      opts.onProgress?.({ phase: "score", done: items.length, total: recs.length });
    }
    if (items.length === 0) throw new InputError(`${samplesFile ?? "samples"}: no completions for the questions of ${files.test}`);
  } else {
    const complete =
      opts.complete ??
      (opts.model && opts.tokenizer ? (await import("./model.js")).modelCompletionFn(opts.model, opts.tokenizer, { batchSize: opts.batchSize }) : undefined);
    if (!complete) throw new TypeError("runGsm8k needs samples, a generator (complete), or a model and its tokenizer");
    shots = opts.shots ?? 8;
    let fewshot: Gsm8kItem[] = [];
    if (shots > 0) {
      if (!files.train || !existsSync(files.train)) {
        throw new InputError(`${files.train ?? join(dirname(files.test), "train.jsonl")}: the ${shots}-shot prompt needs train.jsonl (or --shots 0)`);
      }
      fewshot = loadGsm8k(files.train).slice(0, shots);
      if (fewshot.length < shots) throw new InputError(`${files.train}: ${shots} shots asked but the file has ${fewshot.length} examples`);
    }
    const batch = Math.max(1, opts.batchSize ?? 8);
    const maxNew = opts.maxNewTokens ?? 256;
    // Shots that would leave no room for maxNewTokens within the context are dropped (last first), as
    // MMLU does; the fewest shots used is recorded.
    const promptFor = (q: string) => {
      let k = fewshot.length;
      let p = gsm8kPrompt(fewshot, q);
      if (complete.countTokens && complete.maxPositions) {
        while (k > 0 && complete.countTokens(p, opts.chat) + maxNew > complete.maxPositions) p = gsm8kPrompt(fewshot.slice(0, --k), q);
      }
      minShots = Math.min(minShots, k);
      return p;
    };
    for (let b = 0; b < data.length; b += batch) {
      opts.signal?.throwIfAborted();
      const idx = data.slice(b, b + batch).map((_, k) => b + k);
      const outs = await complete(
        idx.map((i) => promptFor(data[i].question)),
        { maxNewTokens: maxNew, temperature: 0, stop: GSM8K_STOP, chat: opts.chat, signal: opts.signal },
      );
      idx.forEach((i, k) => score(i, cutAt(outs[k].completion, GSM8K_STOP), outs[k].finishReason));
      opts.onProgress?.({ phase: "generate", done: items.length, total: data.length });
    }
  }
  items.sort((a, b) => Number(a.id) - Number(b.id));
  const correct = items.filter((i) => i.passed).length;
  const seconds = (performance.now() - t0) / 1000;
  return {
    task: "gsm8k",
    metric: "accuracy",
    score: correct / items.length,
    n: items.length,
    ci95: wilsonInterval(correct, items.length),
    ciMethod: "wilson",
    meta: {
      qsaeVersion: VERSION,
      date: new Date().toISOString(),
      data: files.test,
      ...(samplesFile ? { samplesFile } : {}),
      ...opts.meta,
      settings: {
        limit: opts.limit ?? null,
        shots: samplesFile || opts.samples ? null : shots,
        ...(opts.samples ? {} : { shotsUsedMin: Number.isFinite(minShots) ? minShots : shots }),
        maxNewTokens: opts.samples ? null : (opts.maxNewTokens ?? 256),
        chat: !!opts.chat,
      },
      seconds,
      itemsPerSecond: items.length / Math.max(seconds, 1e-9),
    },
    items,
  };
}

function cutAt(text: string, stops: string[]): string {
  let cut = text.length;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && i < cut) cut = i;
  }
  return text.slice(0, cut);
}
