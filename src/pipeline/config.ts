// Experiment configs: YAML or JSON, validated with zod. Errors name the key path and what was expected.
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, isAbsolute, resolve } from "node:path";

import { parse as parseYaml } from "yaml";
import { z } from "zod";

import { InputError } from "../errors.js";

export const PRECISIONS = ["fp32", "bf16", "fp16", "int8", "nf4", "fp4"] as const;
export const HOOKS = ["resid_pre", "resid_post", "attn_out", "mlp_out"] as const;
export const SAE_TYPES = ["relu", "topk", "batchtopk", "jumprelu"] as const;
export const BENCHMARKS = ["humaneval", "gsm8k", "mmlu"] as const;
export type BenchmarkName = (typeof BENCHMARKS)[number];

/** Named layer positions, as fractions of the way through the stack (index = round(f * (numLayers - 1))). */
export const LAYER_ALIASES: Record<string, number> = { early: 0.2, middle: 0.5, late: 0.8 };

const precision = z.enum(PRECISIONS);
const positiveInt = z.number().int().positive();
const layerSpec = z.union([
  z.number().int().describe("a layer index (negative counts from the end)"),
  z.number().gt(0).lt(1).describe("a fraction of the depth"),
  z.enum(["early", "middle", "late"]),
]);

const benchCommon = {
  data: z.string().min(1),
  limit: positiveInt.optional(),
  max_new_tokens: positiveInt.optional(),
  batch_size: positiveInt.optional(),
  /** instruct models: prompts go through the chat template (HumanEval, GSM8K) */
  chat: z.boolean().optional(),
};

export const ConfigSchema = z
  .object({
    name: z.string().min(1).optional(),
    description: z.string().optional(),
    /** Default RUNDIR when `--out` is not given (relative to the config file). */
    out: z.string().optional(),
    models: z
      .array(
        z.union([
          z.string().min(1),
          z
            .object({
              path: z.string().min(1),
              name: z.string().regex(/^[A-Za-z0-9._-]+$/).optional(),
              /** devices one copy of the model spans: its layers are split over that many of the run's devices */
              devices: z.number().int().min(1).optional(),
            })
            .strict(),
        ]),
      )
      .min(1),
    precisions: z.array(precision).min(1).default(["bf16", "fp16", "int8", "nf4"]),
    quantization: z
      .object({
        blocksize: z.union([z.literal(64), z.literal(128), z.literal(256), z.literal(512), z.literal(1024), z.literal(2048), z.literal(4096)]).default(64),
        double_quant: z.boolean().default(false),
        int8_threshold: z.number().nonnegative().default(6.0),
        compute_dtype: z.enum(["fp32", "bf16", "fp16"]).optional(),
      })
      .strict()
      .default({ blocksize: 64, double_quant: false, int8_threshold: 6.0 }),
    devices: z.array(z.string().regex(/^(cpu(:0)?|cuda(:\d+)?)$/)).min(1).default(["cpu"]),
    hooks: z.array(z.enum(HOOKS)).min(1).default(["resid_post"]),
    layers: z.array(layerSpec).min(1).default(["early", "middle", "late"]),
    prompts: z.string().min(1),
    extraction: z
      .object({
        max_prompts: positiveInt.optional(),
        max_tokens: positiveInt.optional().describe("tokens per prompt"),
        skip_bos: z.boolean().default(true),
        dtype: z.enum(["fp32", "bf16", "fp16"]).default("fp32"),
        batch_size: positiveInt.optional(),
        shard_rows: positiveInt.optional(),
      })
      .strict()
      .default({ skip_bos: true, dtype: "fp32" }),
    sae: z
      .object({
        type: z.enum(SAE_TYPES).default("relu"),
        expansions: z.array(z.number().positive()).min(1).default([0.5]),
        l1: z.array(z.number().nonnegative()).min(1).default([5e-4]),
        k: positiveInt.optional(),
        epochs: positiveInt.optional(),
        tokens: positiveInt.optional(),
        seeds: z.array(z.number().int().nonnegative()).min(1).default([0]),
        batch_size: positiveInt.optional(),
        lr: z.number().positive().optional(),
      })
      .strict()
      .refine((s) => !(s.epochs !== undefined && s.tokens !== undefined), { message: "give epochs or tokens, not both" })
      .refine((s) => s.type === "relu" || s.type === "jumprelu" || s.k !== undefined, {
        message: "topk and batchtopk SAEs need k",
        path: ["k"],
      })
      .refine((s) => s.type === "topk" || s.type === "batchtopk" || s.k === undefined, {
        message: "k applies to topk and batchtopk SAEs only",
        path: ["k"],
      })
      .default({ type: "relu", expansions: [0.5], l1: [5e-4], seeds: [0] }),
    reference: precision.default("bf16"),
    transfer: z
      .object({
        pairs: z
          .array(z.object({ sae: precision.optional(), a: precision.optional(), b: precision }).strict())
          .optional()
          .describe("default: every precision against the reference, with the reference's SAE"),
        align: z.boolean().default(true).describe("align each precision's own SAE with the reference's"),
        k: positiveInt.default(10),
      })
      .strict()
      .default({ align: true, k: 10 }),
    splice: z
      .object({
        enabled: z.boolean().default(true).describe("splice each site's SAEs into the model's forward pass at every precision"),
        prompts: positiveInt.default(64).describe("the first N prompts of the prompt set"),
        max_tokens: z.number().int().min(2).default(128).describe("tokens kept per prompt"),
        batch_size: positiveInt.optional().describe("prompts per forward pass"),
      })
      .strict()
      .default({ enabled: true, prompts: 64, max_tokens: 128 }),
    benchmarks: z
      .object({
        humaneval: z.object({ ...benchCommon, timeout_s: z.number().positive().optional() }).strict().optional(),
        gsm8k: z.object({ ...benchCommon, shots: z.number().int().nonnegative().optional(), train: z.string().optional() }).strict().optional(),
        mmlu: z
          .object({ ...benchCommon, subjects: z.union([z.string(), z.array(z.string())]).optional(), shots: z.number().int().nonnegative().optional() })
          .strict()
          .optional(),
      })
      .strict()
      .default({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const [i, p] of (c.transfer.pairs ?? []).entries()) {
      for (const k of ["sae", "a", "b"] as const) {
        const v = p[k];
        if (v !== undefined && !c.precisions.includes(v))
          ctx.addIssue({ code: "custom", path: ["transfer", "pairs", i, k], message: `precision ${v} is not in precisions [${c.precisions.join(", ")}]` });
      }
    }
    if (!c.precisions.includes(c.reference))
      ctx.addIssue({ code: "custom", path: ["reference"], message: `reference precision ${c.reference} is not in precisions [${c.precisions.join(", ")}]` });
  });

export type ConfigInput = z.input<typeof ConfigSchema>;
export type ParsedConfig = z.output<typeof ConfigSchema>;

export interface ModelSpec {
  name: string;
  path: string;
  /** how many of the run's devices one copy spans (a device map over its layers); 1 by default */
  devices: number;
}

/** A validated config with paths made absolute and defaults filled in. */
export interface ExperimentConfig extends Omit<ParsedConfig, "models"> {
  models: ModelSpec[];
  /** the file it came from (null when built in code) */
  source: string | null;
}

function formatPath(path: PropertyKey[]): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s || "(top level)";
}

/** One line per problem: `models[0].path: expected string, received number`. */
export function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => {
    let msg = i.message;
    if (i.code === "unrecognized_keys") msg = `unknown key${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => `'${k}'`).join(", ")}`;
    return `${formatPath(i.path)}: ${msg}`;
  });
}

/** Validates a config object; relative paths resolve against `baseDir`. Throws InputError listing every problem. */
export function parseConfig(raw: unknown, baseDir: string, source: string | null = null): ExperimentConfig {
  const r = ConfigSchema.safeParse(raw ?? {});
  if (!r.success) {
    const where = source ?? "config";
    throw new InputError(`${where}: invalid experiment config:\n  ${formatIssues(r.error).join("\n  ")}`);
  }
  const c = r.data;
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const models = c.models.map((m) => {
    const spec = typeof m === "string" ? { path: m } : m;
    const path = abs(spec.path);
    return { path, name: spec.name ?? basename(path), devices: "devices" in spec && spec.devices ? spec.devices : 1 };
  });
  const names = new Set<string>();
  for (const m of models) {
    if (names.has(m.name)) throw new InputError(`${source ?? "config"}: two models are named '${m.name}'; give them distinct 'name's`);
    names.add(m.name);
  }
  const benchmarks = { ...c.benchmarks };
  for (const k of BENCHMARKS) {
    const b = benchmarks[k];
    if (b) benchmarks[k] = { ...b, data: abs(b.data), ...(k === "gsm8k" && (b as { train?: string }).train ? { train: abs((b as { train: string }).train) } : {}) } as never;
  }
  return {
    ...c,
    models,
    prompts: abs(c.prompts),
    out: c.out === undefined ? undefined : abs(c.out),
    benchmarks,
    source,
  };
}

/** Reads a YAML (.yaml/.yml) or JSON config file. */
export function loadConfig(file: string): ExperimentConfig {
  const path = resolve(file);
  if (!existsSync(path)) throw new InputError(`${file}: config file not found`);
  const text = readFileSync(path, "utf8");
  let raw: unknown;
  try {
    raw = path.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new InputError(`${file}: not valid ${path.endsWith(".json") ? "JSON" : "YAML"}: ${(e as Error).message.split("\n")[0]}`);
  }
  return parseConfig(raw, dirname(path), path);
}

/** Number of transformer blocks declared by a model folder's config.json. */
export function readNumLayers(modelDir: string): number {
  const file = resolve(modelDir, "config.json");
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`${file}: ${existsSync(file) ? `not valid JSON (${(e as Error).message})` : "missing (not a Hugging Face model folder)"}`);
  }
  const text = cfg.text_config as Record<string, unknown> | undefined;
  const n = cfg.num_hidden_layers ?? cfg.n_layer ?? cfg.num_layers ?? text?.num_hidden_layers;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) throw new InputError(`${file}: no num_hidden_layers (or n_layer) integer`);
  return n;
}

/** Resolves layer specs (indices, negative indices, fractions, early/middle/late) to sorted unique indices. */
export function resolveLayers(specs: (number | string)[], numLayers: number, where = "layers"): number[] {
  const out = new Set<number>();
  for (const [i, s] of specs.entries()) {
    let idx: number;
    if (typeof s === "string") idx = Math.round(LAYER_ALIASES[s] * (numLayers - 1));
    else if (Number.isInteger(s)) idx = s < 0 ? numLayers + s : s;
    else idx = Math.round(s * (numLayers - 1));
    if (idx < 0 || idx >= numLayers) throw new InputError(`${where}[${i}]: layer ${s} is out of range for a model with ${numLayers} layers`);
    out.add(idx);
  }
  return [...out].sort((a, b) => a - b);
}
