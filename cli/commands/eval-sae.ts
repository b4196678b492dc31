// qsae eval-sae SAE [--acts PATH] [--model DIR --prompts FILE]: reconstruction metrics of an SAE on
// activations, and with a model the loss recovered when its reconstruction is spliced into the forward pass.
import { readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";

import type { CommandModule } from "yargs";

import { InputError } from "../../src/errors.js";
import { actsName } from "../../src/model/activation-store.js";
import { PRECISIONS } from "../../src/model/model.js";
import { readPromptItems } from "../../src/model/prompts.js";
import { Tokenizer } from "../../src/model/tokenizer.js";
import { evalSae, Sae, type SaeEval } from "../../src/sae/index.js";
import { spliceEvalSae, type SpliceEval } from "../../src/sae/splice.js";
import { onInterrupt } from "../interrupt.js";
import { loadModelFromArgs } from "../model-options.js";
import { formatTable, printJson } from "../output.js";

interface Args {
  sae: string;
  acts?: string;
  hook?: string;
  layer?: number;
  "batch-size"?: number;
  model?: string;
  prompts?: string;
  precision?: string;
  "compute-dtype"?: string;
  device?: string;
  limit?: number;
  "max-length"?: number;
  json?: boolean;
}

/** The hook and layer an SAE was trained on: cfg.json metadata.hook_name/layer, else SAELens's hook_name/hook_layer. */
export function saeSite(saeDir: string): { hook?: string; layer?: number } {
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(readFileSync(join(saeDir, "cfg.json"), "utf8")) as Record<string, unknown>;
  } catch {
    return {}; // a missing or broken cfg.json is reported when the SAE loads
  }
  const meta = (cfg.metadata && typeof cfg.metadata === "object" ? cfg.metadata : {}) as Record<string, unknown>;
  const hook = [meta.hook_name, cfg.hook_name].find((v): v is string => typeof v === "string");
  const layer = [meta.layer, meta.hook_layer, cfg.hook_layer].find((v): v is number => typeof v === "number");
  // SAELens hook names look like blocks.6.hook_resid_post: a store names the site resid_post
  const short = hook?.match(/(resid_pre|resid_post|attn_out|mlp_out)$/)?.[1] ?? hook;
  return { hook: short, layer };
}

/** hooks and layers listed by a store's manifest.json; undefined for a plain .safetensors file (or no manifest). */
function storeSites(acts: string): { hooks: string[]; layers: number[] } | undefined {
  let mf: string;
  try {
    mf = statSync(acts).isDirectory() ? join(acts, "manifest.json") : basename(acts) === "manifest.json" ? acts : "";
  } catch {
    return undefined;
  }
  if (!mf) return undefined;
  try {
    const m = JSON.parse(readFileSync(mf, "utf8")) as { hooks?: unknown; layers?: unknown };
    const hooks = Array.isArray(m.hooks) ? m.hooks.filter((h): h is string => typeof h === "string") : [];
    const layers = Array.isArray(m.layers) ? m.layers.filter((l): l is number => typeof l === "number") : [];
    return { hooks, layers };
  } catch {
    return undefined; // the native reader reports a broken manifest with its path
  }
}

/**
 * --hook/--layer as given; where absent and the store holds several, the SAE's own (its cfg.json metadata).
 * A store with only one needs neither (the native reader picks it).
 */
export function resolveSite(saeDir: string, acts: string, hook?: string, layer?: number): { hook?: string; layer?: number; fromSae: boolean } {
  const store = storeSites(acts);
  if (!store || (hook !== undefined || store.hooks.length <= 1) && (layer !== undefined || store.layers.length <= 1)) {
    return { hook, layer, fromSae: false };
  }
  const sae = saeSite(saeDir);
  const listing = store.hooks.flatMap((h) => store.layers.map((l) => actsName(h, l))).join(", ");
  let fromSae = false;
  if (hook === undefined && store.hooks.length > 1) {
    if (sae.hook === undefined) throw new InputError(`${acts}: the store holds several hooks and the SAE's cfg.json names none; choose one with --hook (${listing})`);
    if (!store.hooks.includes(sae.hook)) {
      throw new InputError(`${acts}: the SAE's cfg.json names hook '${sae.hook}', which the store does not hold; choose one with --hook (${listing})`);
    }
    hook = sae.hook;
    fromSae = true;
  }
  if (layer === undefined && store.layers.length > 1) {
    if (sae.layer === undefined) throw new InputError(`${acts}: the store holds several layers and the SAE's cfg.json names none; choose one with --layer (${listing})`);
    if (!store.layers.includes(sae.layer)) {
      throw new InputError(`${acts}: the SAE's cfg.json names layer ${sae.layer}, which the store does not hold; choose one with --layer (${listing})`);
    }
    layer = sae.layer;
    fromSae = true;
  }
  return { hook: hook ?? store.hooks[0], layer: layer ?? store.layers[0], fromSae };
}

export const evalSaeCommand: CommandModule<object, Args> = {
  command: "eval-sae <sae>",
  describe:
    "Evaluate an SAE folder (qsae or SAELens): on activations mse, explained variance, L0, L1, dead fraction; with a model, loss recovered (ce_score) and KL when spliced in",
  builder: (y) =>
    y
      .positional("sae", { type: "string", demandOption: true, description: "SAE folder" })
      .option("acts", { type: "string", description: "Activation store folder or .safetensors with acts [N, D]" })
      .option("hook", { type: "string", description: "Hook (default: the store's only one, or the SAE's metadata)" })
      .option("layer", { type: "number", description: "Layer (default: the store's only one, or the SAE's metadata)" })
      .option("batch-size", { type: "number", description: "Tokens per batch on activations [4096]; prompts per forward with --model [8]" })
      .option("model", { type: "string", description: "Model folder: splice the SAE into its forward pass (needs --prompts)" })
      .option("prompts", { type: "string", description: "Prompts (.txt one per line, .jsonl prompt/text/input_ids) for --model" })
      .option("precision", { type: "string", choices: [...PRECISIONS], description: "--model precision (default: the checkpoint's dtype)" })
      .option("compute-dtype", { type: "string", choices: ["fp32", "bf16", "fp16"], description: "For int8/nf4/fp4" })
      .option("device", { type: "string", default: "cpu", description: "cpu | cuda | cuda:N" })
      .option("limit", { type: "number", description: "Use the first N prompts" })
      .option("max-length", { type: "number", description: "Tokens kept per prompt [256]" })
      .option("json", {
        type: "boolean",
        description: "Print JSON: {mse, explained_variance, l0, l1, dead_fraction, ...} and with --model {ce_orig, ce_sae, ce_zero, ce_score, kl_sae, kl_zero}",
      })
      .check((a) => {
        if (!a.acts && !a.model) throw new Error("give --acts (reconstruction metrics), --model with --prompts (loss recovered), or both");
        if (a.model && !a.prompts) throw new Error("--model needs --prompts");
        return true;
      })
      .strict(),
  handler: async (args) => {
    const intr = onInterrupt();
    try {
      let rec: SaeEval | undefined;
      let spl: SpliceEval | undefined;
      let site: ReturnType<typeof resolveSite> | undefined;
      if (args.acts) {
        site = resolveSite(args.sae, args.acts, args.hook, args.layer);
        rec = await evalSae(args.sae, args.acts, { hook: site.hook, layer: site.layer, batchSize: args["batch-size"], signal: intr.signal });
      }
      if (args.model && args.prompts) {
        let items = await readPromptItems(args.prompts);
        if (args.limit !== undefined) {
          if (!Number.isInteger(args.limit) || args.limit < 1) throw new InputError(`--limit: expected an integer >= 1, got ${args.limit}`);
          items = items.slice(0, args.limit) as string[] | number[][];
        }
        const tok = typeof items[0] === "string" ? await Tokenizer.fromModelDir(args.model) : null;
        const ids = tok ? (items as string[]).map((p) => tok.encode(p)) : (items as number[][]);
        const sae = await Sae.load(args.sae);
        const model = await loadModelFromArgs({ ...args, model: args.model });
        try {
          spl = await spliceEvalSae(model, sae, ids, {
            hook: args.hook,
            layer: args.layer,
            batchSize: args["batch-size"],
            maxLength: args["max-length"],
            signal: intr.signal,
          });
        } finally {
          model.dispose();
          sae.dispose();
        }
      }
      if (args.json) {
        printJson({ ...(rec ?? {}), ...(spl ?? {}) });
        return;
      }
      const rows: (string | number)[][] = [];
      if (rec) {
        rows.push(
          ["mse", rec.mse.toPrecision(5)],
          ["explained_variance", rec.explained_variance.toFixed(4)],
          ["l0", rec.l0.toFixed(2)],
          ["l1", rec.l1.toPrecision(5)],
          ["dead_fraction", rec.dead_fraction.toFixed(4)],
          ["tokens", String(rec.n_tokens)],
          ["d_in / d_sae", `${rec.d_in} / ${rec.d_sae}`],
        );
        if (site?.fromSae) rows.push(["activations (the SAE's hook and layer)", actsName(site.hook!, site.layer!)]);
      }
      if (spl) {
        rows.push(
          [`ce_score (loss recovered, ${spl.hook}.${spl.layer})`, spl.ce_score.toFixed(4)],
          ["ce_orig / ce_sae / ce_zero (nats)", `${spl.ce_orig.toFixed(4)} / ${spl.ce_sae.toFixed(4)} / ${spl.ce_zero.toFixed(4)}`],
          ["kl_sae / kl_zero (nats)", `${spl.kl_sae.toPrecision(4)} / ${spl.kl_zero.toPrecision(4)}`],
          ["scored tokens", String(spl.tokens)],
        );
      }
      process.stdout.write(`${formatTable(["metric", "value"], rows)}\n`);
    } finally {
      intr.release();
    }
  },
};
