// Comparing two benchmark results (e.g. BF16 vs NF4): per-item flips, McNemar's exact test, and the
// outputs of the flipped items side by side.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

import { InputError } from "../errors.js";
import { readJsonl } from "./io.js";
import { mcnemarExact } from "./stats.js";
import type { BenchItem, BenchResult, BenchTask } from "./types.js";

export interface Flip {
  id: string;
  a: BenchItem;
  b: BenchItem;
}

export interface CompareResult {
  task: BenchTask | "unknown";
  /** Items present in both results (the first sample of each id). */
  n: number;
  scoreA: number;
  scoreB: number;
  bothPassed: number;
  bothFailed: number;
  /** Passed in A, failed in B. */
  passToFail: Flip[];
  /** Failed in A, passed in B. */
  failToPass: Flip[];
  /** McNemar's exact (binomial) two-sided p-value over the discordant pairs. */
  pValue: number;
  /** Ids present in only one of the results. */
  onlyInA: string[];
  onlyInB: string[];
}

/** Per-item comparison of two results of the same task. */
export function compareResults(a: Pick<BenchResult, "task" | "items">, b: Pick<BenchResult, "task" | "items">): CompareResult {
  if (a.task !== b.task) throw new InputError(`cannot compare a ${a.task} result with a ${b.task} result`);
  const first = (items: BenchItem[]) => {
    const m = new Map<string, BenchItem>();
    for (const it of items) if (!m.has(it.id) || (it.sample ?? 0) < (m.get(it.id)!.sample ?? 0)) m.set(it.id, it);
    return m;
  };
  const A = first(a.items);
  const B = first(b.items);
  const r: CompareResult = {
    task: a.task,
    n: 0,
    scoreA: 0,
    scoreB: 0,
    bothPassed: 0,
    bothFailed: 0,
    passToFail: [],
    failToPass: [],
    pValue: 1,
    onlyInA: [...A.keys()].filter((k) => !B.has(k)),
    onlyInB: [...B.keys()].filter((k) => !A.has(k)),
  };
  let pa = 0;
  let pb = 0;
  for (const [id, x] of A) {
    const y = B.get(id);
    if (!y) continue;
    r.n++;
    if (x.passed) pa++;
    if (y.passed) pb++;
    if (x.passed && y.passed) r.bothPassed++;
    else if (!x.passed && !y.passed) r.bothFailed++;
    else (x.passed ? r.passToFail : r.failToPass).push({ id, a: x, b: y });
  }
  r.scoreA = r.n ? pa / r.n : 0;
  r.scoreB = r.n ? pb / r.n : 0;
  r.pValue = mcnemarExact(r.passToFail.length, r.failToPass.length);
  return r;
}

/**
 * Reads a result: a folder written by `--out` (result.json), a result.json, or a samples JSONL with
 * `passed` per line (HumanEval samples.jsonl: task_id; GSM8K: index; MMLU: subject + index).
 */
export function loadResult(path: string): BenchResult | (Pick<BenchResult, "task" | "items"> & { score?: number }) {
  if (!existsSync(path)) throw new InputError(`${path}: result not found`);
  let file = path;
  if (statSync(path).isDirectory()) {
    file = join(path, "result.json");
    if (!existsSync(file)) throw new InputError(`${path}: no result.json in this folder (write one with --out)`);
  }
  if (!file.endsWith(".jsonl") && !file.endsWith(".jsonl.gz")) {
    let j: unknown;
    try {
      j = JSON.parse(readFileSync(file, "utf8"));
    } catch (e) {
      throw new InputError(`${file}: not a JSON result (${(e as Error).message})`);
    }
    const r = j as BenchResult;
    if (!r || typeof r !== "object" || !["humaneval", "gsm8k", "mmlu"].includes(r.task) || !Array.isArray(r.items)) {
      throw new InputError(`${file}: not a qsae bench result (needs "task" and "items")`);
    }
    r.items.forEach((it, i) => {
      if (typeof it?.id !== "string" || typeof it.passed !== "boolean") {
        throw new InputError(`${file}: items[${i}] needs a string "id" and a boolean "passed"`);
      }
    });
    return r;
  }
  let task: BenchTask | undefined;
  const counts = new Map<string, number>();
  const items = readJsonl(file, "samples file").map((l) => {
    const v = l.value;
    let id: string;
    let t: BenchTask;
    if (typeof v.task_id === "string") {
      id = v.task_id;
      t = "humaneval";
    } else if (typeof v.subject === "string" && v.index !== undefined) {
      id = `${v.subject}/${v.index}`;
      t = "mmlu";
    } else if (v.index !== undefined) {
      id = String(v.index);
      t = "gsm8k";
    } else throw new InputError(`${file}:${l.line}: needs "task_id", "index" or "subject"+"index"`);
    if (typeof v.passed !== "boolean") throw new InputError(`${file}:${l.line}: missing boolean field "passed" (score the samples first)`);
    if (task && task !== t) throw new InputError(`${file}:${l.line}: mixes ${task} and ${t} records`);
    task = t;
    const sample = counts.get(id) ?? 0;
    counts.set(id, sample + 1);
    return {
      id,
      passed: v.passed,
      result: typeof v.result === "string" ? v.result : v.passed ? "passed" : "failed",
      completion: typeof v.completion === "string" ? v.completion : typeof v.answer === "string" ? v.answer : undefined,
      sample,
    } as BenchItem;
  });
  if (!task) throw new InputError(`${file}: empty`);
  return { task, items };
}

/** Two texts in columns of `width` characters each (long lines wrap), separated by " │ ". */
export function sideBySide(left: string, right: string, width: number, titles: [string, string]): string {
  const wrap = (s: string) =>
    s
      .replace(/\t/g, "    ")
      .split("\n")
      .flatMap((l) => {
        const out: string[] = [];
        for (let i = 0; i < l.length; i += width) out.push(l.slice(i, i + width));
        return out.length ? out : [""];
      });
  const L = wrap(left);
  const R = wrap(right);
  const rows = [
    `${titles[0].slice(0, width).padEnd(width)} │ ${titles[1].slice(0, width)}`,
    `${"─".repeat(width)}─┼─${"─".repeat(width)}`,
  ];
  for (let i = 0; i < Math.max(L.length, R.length); i++) rows.push(`${(L[i] ?? "").padEnd(width)} │ ${R[i] ?? ""}`.trimEnd());
  return rows.join("\n");
}
