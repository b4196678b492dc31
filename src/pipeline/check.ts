// The dry validation pass run before any long stage (and alone with `qsae run CONFIG --check`): model
// folders that would not load, layers out of range, prompt sets and benchmark data that are missing or
// malformed, a missing python3 for HumanEval. Every problem is collected, then reported together.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

import { loadGsm8k, resolveGsm8kFiles } from "../bench/gsm8k.js";
import { loadHumanEval } from "../bench/humaneval.js";
import { resolvePython } from "../bench/execute.js";
import { selectSubjects } from "../bench/mmlu.js";
import { InputError } from "../errors.js";
import { planModel } from "../model/model.js";
import type { Precision } from "../model/model.js";
import { readPrompts } from "../model/prompts.js";
import type { ExperimentConfig } from "./config.js";
import { readNumLayers, resolveLayers } from "./config.js";

export interface CheckReport {
  problems: string[];
  models: { name: string; path: string; numLayers: number; layers: number[]; precisions: Record<string, { bytes: number; error?: string }> }[];
  prompts: number;
  /** prompts the splice stage scores (0 when it is off) */
  splicePrompts: number;
  benchmarks: Record<string, number>;
}

const msg = (e: unknown) => (e instanceof Error ? e.message : String(e)).replace(/^qsae: /, "");

/** Validates everything a run needs without loading weights. `deep: false` skips the native model plans. */
export async function checkExperiment(c: ExperimentConfig, opts: { deep?: boolean } = {}): Promise<CheckReport> {
  const problems: string[] = [];
  const report: CheckReport = { problems, models: [], prompts: 0, splicePrompts: 0, benchmarks: {} };
  for (const [i, m] of c.models.entries()) {
    const where = `models[${i}] (${m.path})`;
    if (m.devices > c.devices.length)
      problems.push(`${where}: devices: ${m.devices}, but the run has ${c.devices.length} device(s) (${c.devices.join(", ")}); list more under 'devices' or pass --devices`);
    if (!existsSync(m.path) || !statSync(m.path).isDirectory()) {
      problems.push(`${where}: model folder not found`);
      continue;
    }
    let numLayers = 0;
    try {
      numLayers = readNumLayers(m.path);
    } catch (e) {
      problems.push(`${where}: ${msg(e)}`);
      continue;
    }
    if (!readdirSync(m.path).some((f) => f.endsWith(".safetensors") || f === "model.safetensors.index.json"))
      problems.push(`${where}: no *.safetensors weights`);
    if (!existsSync(join(m.path, "tokenizer.json"))) problems.push(`${where}: no tokenizer.json (prompts and benchmarks need the model's tokenizer)`);
    let layers: number[] = [];
    try {
      layers = resolveLayers(c.layers, numLayers);
    } catch (e) {
      problems.push(`${where}: ${msg(e)}`);
    }
    const entry = { name: m.name, path: m.path, numLayers, layers, precisions: {} as Record<string, { bytes: number; error?: string }> };
    report.models.push(entry);
    if (opts.deep === false) continue;
    for (const p of c.precisions) {
      try {
        const plan = await planModel(m.path, {
          precision: p as Precision,
          computeDtype: c.quantization.compute_dtype,
          blocksize: c.quantization.blocksize,
          doubleQuant: c.quantization.double_quant,
          int8Threshold: c.quantization.int8_threshold,
        });
        entry.precisions[p] = { bytes: plan.totalBytes };
      } catch (e) {
        entry.precisions[p] = { bytes: 0, error: msg(e) };
        problems.push(`${where}: does not load at ${p}: ${msg(e)}`);
      }
    }
  }
  try {
    const prompts = await readPrompts(c.prompts);
    report.prompts = c.extraction.max_prompts ? Math.min(prompts.length, c.extraction.max_prompts) : prompts.length;
    if (prompts.length === 0) problems.push(`prompts (${c.prompts}): no prompts`);
    if (c.splice.enabled) report.splicePrompts = Math.min(prompts.length, c.splice.prompts);
  } catch (e) {
    problems.push(`prompts: ${msg(e)}`);
  }
  const b = c.benchmarks;
  if (b.humaneval) {
    try {
      const n = loadHumanEval(b.humaneval.data).length;
      report.benchmarks.humaneval = b.humaneval.limit ? Math.min(n, b.humaneval.limit) : n;
    } catch (e) {
      problems.push(`benchmarks.humaneval.data: ${msg(e)}`);
    }
    try {
      await resolvePython();
    } catch (e) {
      problems.push(`benchmarks.humaneval: ${msg(e)}`);
    }
  }
  if (b.gsm8k) {
    try {
      const files = resolveGsm8kFiles(b.gsm8k.data, b.gsm8k.train);
      const n = loadGsm8k(files.test).length;
      if ((b.gsm8k.shots ?? 8) > 0) {
        if (!files.train || !existsSync(files.train)) problems.push(`benchmarks.gsm8k: few-shot examples need train.jsonl beside ${b.gsm8k.data} (or 'train:', or 'shots: 0')`);
        else loadGsm8k(files.train);
      }
      report.benchmarks.gsm8k = b.gsm8k.limit ? Math.min(n, b.gsm8k.limit) : n;
    } catch (e) {
      problems.push(`benchmarks.gsm8k.data: ${msg(e)}`);
    }
  }
  if (b.mmlu) {
    try {
      const subjects = b.mmlu.subjects === undefined ? undefined : Array.isArray(b.mmlu.subjects) ? b.mmlu.subjects : [b.mmlu.subjects];
      report.benchmarks.mmlu = selectSubjects(b.mmlu.data, subjects).length;
    } catch (e) {
      problems.push(`benchmarks.mmlu.data: ${msg(e)}`);
    }
  }
  return report;
}

/** Throws one InputError listing every problem of the config. */
export function assertChecked(r: CheckReport, source: string | null): void {
  if (r.problems.length === 0) return;
  throw new InputError(`${source ?? "config"}: ${r.problems.length} problem(s) found before running:\n  ${r.problems.join("\n  ")}`);
}
