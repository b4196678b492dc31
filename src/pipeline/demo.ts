// `qsae demo`: the whole pipeline on the bundled default model (models/<name>) and the bundled prompt and
// task sets (data/prompts, data/tasks), on CPU, sized to finish in minutes.
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

import { InputError } from "../errors.js";
import { packageRoot } from "../package-root.js";
import type { ConfigInput, ExperimentConfig } from "./config.js";
import { parseConfig } from "./config.js";

export { packageRoot };

/** The bundled default model's folder name under models/ (QSAE_DEMO_MODEL overrides the folder). */
export const DEFAULT_MODEL_NAME = "qsae-tiny-code";

export function defaultModelDir(root = packageRoot()): string {
  if (process.env.QSAE_DEMO_MODEL) return process.env.QSAE_DEMO_MODEL;
  const preferred = join(root, "models", DEFAULT_MODEL_NAME);
  if (existsSync(join(preferred, "config.json"))) return preferred;
  // Any single model folder bundled under models/
  const dir = join(root, "models");
  if (existsSync(dir)) {
    const found = readdirSync(dir)
      .sort()
      .map((d) => join(dir, d))
      .filter((d) => !/\.tmp/.test(d) && statSync(d).isDirectory() && existsSync(join(d, "config.json")));
    if (found.length) return found[0];
  }
  return preferred;
}

function walk(dir: string, depth = 3): string[] {
  if (!existsSync(dir) || depth < 0) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(p, ...walk(p, depth - 1));
    else out.push(p);
  }
  return out;
}

export interface DemoData {
  prompts: string;
  humaneval?: string;
  gsm8k?: string;
  mmlu?: string;
}

/** Finds the bundled prompt and task sets under data/ by their formats' usual names. */
export function findDemoData(root = packageRoot()): DemoData {
  const data = join(root, "data");
  const prompts = walk(join(data, "prompts")).filter((f) => /\.(jsonl|txt)$/.test(f));
  if (prompts.length === 0)
    throw new InputError(`qsae demo: the bundled prompt set is missing: expected a .jsonl or .txt file under ${join(data, "prompts")}`);
  const tasks = walk(join(data, "tasks"));
  const humaneval = tasks.find((f) => /humaneval[^/]*\.jsonl(\.gz)?$/i.test(f));
  const gsm8k = tasks.find((f) => /gsm8k[^/]*\/test\.jsonl$/i.test(f)) ?? tasks.find((f) => /gsm8k[^/]*\.jsonl$/i.test(f) && !/train/i.test(f));
  const mmlu = tasks.find((f) => /mmlu[^/]*$/i.test(f) && existsSync(join(f, "test")) && statSync(f).isDirectory());
  return { prompts: prompts.find((f) => f.endsWith(".jsonl")) ?? prompts[0], humaneval, gsm8k, mmlu };
}

/** The demo's experiment: 4 precisions, 3 layers, SAEs 0.5× and 2×, transfer, alignment, loss recovered, three benchmarks. */
export function demoConfig(opts: { quick?: boolean; root?: string } = {}): ExperimentConfig {
  const root = opts.root ?? packageRoot();
  const model = defaultModelDir(root);
  if (!existsSync(join(model, "config.json")))
    throw new InputError(
      `qsae demo: the bundled default model is missing (expected ${model}/config.json). It is trained by qsae itself: see models/README.md (scripts/train-default-model), or set QSAE_DEMO_MODEL to a model folder.`,
    );
  const data = findDemoData(root);
  const quick = opts.quick ?? false;
  const raw: ConfigInput = {
    name: "qsae demo",
    description: "The bundled default code model at BF16, FP16, INT8 and NF4: SAEs trained at BF16 applied to each precision, each precision's own SAEs aligned with BF16's, BF16's and each precision's own SAEs spliced into that precision's forward pass (loss recovered), and three small benchmarks.",
    models: [{ path: model, name: "default" }],
    precisions: ["bf16", "fp16", "int8", "nf4"],
    hooks: ["resid_post"],
    // Three distinct layers for any depth >= 3 (with 4 layers, early/middle/late would round to only 1 and 2).
    layers: ["early", "middle", -1],
    prompts: data.prompts,
    extraction: { max_prompts: quick ? 48 : 500, max_tokens: quick ? 48 : 128, skip_bos: true, dtype: "fp32" },
    sae: { type: "relu", expansions: [0.5, 2], l1: [5e-4], epochs: quick ? 2 : 10, seeds: [0], batch_size: 1024 },
    reference: "bf16",
    transfer: { align: true, k: 10 },
    splice: { enabled: true, prompts: quick ? 16 : 64, max_tokens: quick ? 48 : 128, batch_size: 16 },
    benchmarks: {
      ...(data.humaneval ? { humaneval: { data: data.humaneval, max_new_tokens: 64, batch_size: 8, ...(quick ? { limit: 4 } : {}) } } : {}),
      ...(data.gsm8k
        ? { gsm8k: { data: data.gsm8k, max_new_tokens: 48, batch_size: 8, ...(existsSync(join(dirname(data.gsm8k), "train.jsonl")) ? (quick ? { shots: 2 } : {}) : { shots: 0 }), ...(quick ? { limit: 4 } : {}) } }
        : {}),
      ...(data.mmlu ? { mmlu: { data: data.mmlu, ...(quick ? { limit: 4 } : {}) } } : {}),
    },
  };
  return parseConfig(raw, root, null);
}
