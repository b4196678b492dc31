// MMLU: the official CSV layout (dev/{subject}_dev.csv, test/{subject}_test.csv; no header; question,
// A, B, C, D, answer letter), the 5-shot prompt of the original harness, scoring by the highest
// next-token log-probability among " A", " B", " C", " D"; accuracy pooled over questions and per subject.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

import { InputError } from "../errors.js";
import { VERSION } from "../version.js";
import { checkLimit } from "./humaneval.js";
import { indexField, parseCsv, readJsonl, readTextFile, stringField } from "./io.js";
import { wilsonInterval } from "./stats.js";
import type { BenchItem, BenchResult, ChoiceScorer, CommonOptions } from "./types.js";

export const LETTERS = ["A", "B", "C", "D"] as const;
export type Letter = (typeof LETTERS)[number];

export interface MmluQuestion {
  question: string;
  choices: [string, string, string, string];
  answer: Letter;
}

/** The seed's MMLU-CS. */
export const MMLU_GROUPS: Record<string, string[]> = {
  cs: ["college_computer_science", "high_school_computer_science", "computer_security", "machine_learning"],
};

/** Reads one subject CSV; errors name the file and line. */
export function loadMmluCsv(path: string): MmluQuestion[] {
  const rows = parseCsv(readTextFile(path, "MMLU CSV file"), path);
  return rows.map((r) => {
    if (r.fields.length !== 6) {
      throw new InputError(`${path}:${r.line}: expected 6 columns (question, A, B, C, D, answer) but found ${r.fields.length}`);
    }
    const ans = r.fields[5].trim();
    if (!(LETTERS as readonly string[]).includes(ans)) {
      throw new InputError(`${path}:${r.line}: the answer must be one of the letters A, B, C, D but is "${ans.slice(0, 40)}"`);
    }
    return { question: r.fields[0], choices: [r.fields[1], r.fields[2], r.fields[3], r.fields[4]], answer: ans as Letter };
  });
}

/** Subjects of an MMLU folder (those with a test file), sorted. */
export function mmluSubjects(dir: string): string[] {
  const testDir = join(dir, "test");
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new InputError(`${dir}: MMLU data folder not found`);
  if (!existsSync(testDir)) throw new InputError(`${dir}: no test/ folder (expected dev/{subject}_dev.csv and test/{subject}_test.csv)`);
  const subs = readdirSync(testDir)
    .filter((f) => f.endsWith("_test.csv"))
    .map((f) => f.slice(0, -"_test.csv".length))
    .sort();
  if (subs.length === 0) throw new InputError(`${testDir}: no {subject}_test.csv files`);
  return subs;
}

/** Expands --subjects (names and groups such as "cs"), checking each exists. */
export function selectSubjects(dir: string, wanted?: string[]): string[] {
  const all = mmluSubjects(dir);
  if (!wanted || wanted.length === 0) return all;
  const out: string[] = [];
  for (const w of wanted.flatMap((s) => s.split(",")).map((s) => s.trim()).filter(Boolean)) {
    for (const s of MMLU_GROUPS[w] ?? [w]) {
      if (!all.includes(s)) {
        throw new InputError(`MMLU subject "${s}" has no test file in ${dir}/test (available: ${all.slice(0, 8).join(", ")}${all.length > 8 ? ", ..." : ""}; group: cs)`);
      }
      if (!out.includes(s)) out.push(s);
    }
  }
  return out;
}

export function formatSubject(subject: string): string {
  return subject.split("_").join(" ");
}

export function formatQuestion(q: MmluQuestion, withAnswer: boolean): string {
  let s = q.question;
  q.choices.forEach((c, i) => (s += `\n${LETTERS[i]}. ${c}`));
  return `${s}\nAnswer:${withAnswer ? ` ${q.answer}\n\n` : ""}`;
}

/** The k-shot prompt (dev examples, then the test question ending in "Answer:"). */
export function mmluPrompt(subject: string, dev: MmluQuestion[], k: number, q: MmluQuestion): string {
  let s = `The following are multiple choice questions (with answers) about ${formatSubject(subject)}.\n\n`;
  for (const d of dev.slice(0, k)) s += formatQuestion(d, true);
  return s + formatQuestion(q, false);
}

/** The prompt with as many of `shots` dev examples as fit the context (the original harness' rule). */
export function fitMmluPrompt(subject: string, dev: MmluQuestion[], shots: number, q: MmluQuestion, scorer: Pick<ChoiceScorer, "countTokens" | "maxPositions">): { prompt: string; shots: number } {
  let k = Math.min(shots, dev.length);
  let prompt = mmluPrompt(subject, dev, k, q);
  while (k > 0 && scorer.countTokens(prompt) + 1 > scorer.maxPositions) {
    k--;
    prompt = mmluPrompt(subject, dev, k, q);
  }
  return { prompt, shots: k };
}

export interface MmluOptions extends CommonOptions {
  /** Subject names and/or groups ("cs"). Default: all subjects with a test file. */
  subjects?: string[];
  /** Score these answers (JSONL with `subject`, `index`, `answer`) instead of running a model. */
  samples?: string | { subject: string; index: number; answer: string }[];
  scorer?: ChoiceScorer;
  /** Dev examples per prompt (default 5; fewer when the context would overflow). */
  shots?: number;
}

export async function runMmlu(opts: MmluOptions): Promise<BenchResult> {
  const t0 = performance.now();
  const subjects = selectSubjects(opts.data, opts.subjects);
  const tests = new Map<string, MmluQuestion[]>();
  for (const s of subjects) {
    let qs = loadMmluCsv(join(opts.data, "test", `${s}_test.csv`));
    if (opts.limit !== undefined) qs = qs.slice(0, checkLimit(opts.limit));
    tests.set(s, qs);
  }
  const total = [...tests.values()].reduce((a, q) => a + q.length, 0);
  const items: BenchItem[] = [];
  const record = (subject: string, index: number, answer: Letter | null, logprobs?: number[]) => {
    const ref = tests.get(subject)![index].answer;
    const passed = answer === ref;
    items.push({
      id: `${subject}/${index}`,
      passed,
      result: passed ? "correct" : `wrong: chose ${answer}, expected ${ref}`,
      answer,
      reference: ref,
      ...(logprobs ? { logprobs } : {}),
    });
  };

  const samplesFile = typeof opts.samples === "string" ? opts.samples : undefined;
  const shotsUsed: Record<string, number> = {};
  if (opts.samples !== undefined) {
    const where = (line?: number) => `${samplesFile ?? "samples"}:${line ?? "?"}`;
    const recs =
      typeof opts.samples === "string"
        ? readJsonl(opts.samples, "samples file").map((l) => ({
            subject: stringField(samplesFile!, l, "subject", false),
            index: indexField(samplesFile!, l, "index"),
            answer: stringField(samplesFile!, l, "answer"),
            line: l.line as number | undefined,
          }))
        : opts.samples.map((s) => ({ ...s, line: undefined as number | undefined }));
    const seen = new Set<string>();
    for (const r of recs) {
      const letter = r.answer.trim().toUpperCase();
      if (!(LETTERS as readonly string[]).includes(letter)) {
        throw new InputError(`${where(r.line)}: the answer must be one of the letters A, B, C, D but is "${r.answer.slice(0, 40)}"`);
      }
      const qs = tests.get(r.subject);
      if (!qs) {
        if (opts.subjects?.length) continue;
        throw new InputError(`${where(r.line)}: subject "${r.subject}" has no test file in ${opts.data}/test`);
      }
      if (r.index >= qs.length) {
        if (opts.limit !== undefined) continue;
        throw new InputError(`${where(r.line)}: index ${r.index} is past the end of ${r.subject}_test.csv (${qs.length} questions)`);
      }
      const id = `${r.subject}/${r.index}`;
      if (seen.has(id)) throw new InputError(`${where(r.line)}: ${id} appears twice`);
      seen.add(id);
      record(r.subject, r.index, letter as Letter);
    }
    if (items.length === 0) throw new InputError(`${samplesFile ?? "samples"}: no answers for the selected MMLU questions`);
  } else {
    const scorer =
      opts.scorer ?? (opts.model && opts.tokenizer ? (await import("./model.js")).modelChoiceScorer(opts.model, opts.tokenizer) : undefined);
    if (!scorer) throw new TypeError("runMmlu needs samples, a scorer, or a model and its tokenizer");
    const shots = opts.shots ?? 5;
    const batch = Math.max(1, opts.batchSize ?? 8);
    const work: { subject: string; index: number; prompt: string }[] = [];
    for (const s of subjects) {
      const devPath = join(opts.data, "dev", `${s}_dev.csv`);
      let dev: MmluQuestion[] = [];
      if (shots > 0) {
        if (!existsSync(devPath)) throw new InputError(`${devPath}: the ${shots}-shot prompt needs the dev file (or --shots 0)`);
        dev = loadMmluCsv(devPath);
      }
      let minShots = shots;
      tests.get(s)!.forEach((q, index) => {
        const f = fitMmluPrompt(s, dev, shots, q, scorer);
        minShots = Math.min(minShots, f.shots);
        work.push({ subject: s, index, prompt: f.prompt });
      });
      shotsUsed[s] = minShots;
    }
    for (let b = 0; b < work.length; b += batch) {
      opts.signal?.throwIfAborted();
      const chunk = work.slice(b, b + batch);
      const lps = await scorer.score(
        chunk.map((w) => w.prompt),
        opts.signal,
      );
      chunk.forEach((w, k) => {
        const lp = lps[k];
        let best = 0;
        for (let i = 1; i < 4; i++) if (lp[i] > lp[best]) best = i;
        record(w.subject, w.index, LETTERS[best], lp);
      });
      opts.onProgress?.({ phase: "score", done: items.length, total });
    }
  }

  const order = new Map(subjects.map((s, i) => [s, i]));
  const key = (id: string) => {
    const j = id.lastIndexOf("/");
    return order.get(id.slice(0, j))! * 1e7 + Number(id.slice(j + 1));
  };
  items.sort((a, b) => key(a.id) - key(b.id));
  const per: Record<string, { n: number; correct: number; accuracy: number }> = {};
  for (const it of items) {
    const s = it.id.slice(0, it.id.lastIndexOf("/"));
    per[s] ??= { n: 0, correct: 0, accuracy: 0 };
    per[s].n++;
    if (it.passed) per[s].correct++;
  }
  for (const v of Object.values(per)) v.accuracy = v.correct / v.n;
  const correct = items.filter((i) => i.passed).length;
  const seconds = (performance.now() - t0) / 1000;
  return {
    task: "mmlu",
    metric: "accuracy",
    score: correct / items.length,
    n: items.length,
    ci95: wilsonInterval(correct, items.length),
    ciMethod: "wilson",
    subjects: per,
    meta: {
      qsaeVersion: VERSION,
      date: new Date().toISOString(),
      data: opts.data,
      ...(samplesFile ? { samplesFile } : {}),
      ...opts.meta,
      settings: {
        limit: opts.limit ?? null,
        subjects: opts.subjects ?? null,
        shots: opts.samples ? null : (opts.shots ?? 5),
        ...(opts.samples ? {} : { shotsUsedMin: shotsUsed }),
      },
      seconds,
      itemsPerSecond: items.length / Math.max(seconds, 1e-9),
    },
    items,
  };
}
