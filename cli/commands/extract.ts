// qsae extract MODEL --precision P --layers 0,6,11 [--hooks resid_post] --prompts FILE --out DIR: captures
// activations of every chosen hook and layer in one pass over the prompts into an activation store, with a
// progress bar (tokens/s, ETA) on a TTY and plain lines otherwise, on stderr.
import cliProgress from "cli-progress";
import type { CommandModule } from "yargs";

import { loadModelFromArgs, type ModelArgs, withModelOptions } from "../model-options.js";

import { InputError } from "../../src/errors.js";
import type { StoreDtype } from "../../src/model/activation-store.js";
import { extractActivations } from "../../src/model/extract.js";
import type { ExtractHook } from "../../src/model/extract.js";
import { HOOK_NAMES } from "../../src/model/model.js";
import { readPromptItems } from "../../src/model/prompts.js";
import { Tokenizer } from "../../src/model/tokenizer.js";
import type { Progress } from "../../src/native/cancel.js";
import { formatBytes } from "../output.js";

interface Args extends ModelArgs {
  layers: string;
  hooks: string;
  prompts: string;
  out: string;
  dtype: string;
  "shard-rows"?: number;
  "max-length"?: number;
  "batch-size": number;
  "max-batch-tokens": number;
  "skip-bos": boolean;
  "special-tokens": boolean;
  tokenizer?: string;
  limit?: number;
  overwrite?: boolean;
}

function parseList(s: string, what: string): string[] {
  const v = s.split(",").map((x) => x.trim()).filter(Boolean);
  if (v.length === 0) throw new InputError(`--${what}: expected a comma-separated list, got '${s}'`);
  return v;
}

export const extractCommand: CommandModule<object, Args> = {
  command: "extract <model>",
  describe: "Capture activations (hooks x layers, one pass) for a prompt file into an activation store",
  builder: (y) =>
    withModelOptions(y)
      .option("layers", { type: "string", demandOption: true, description: "Comma-separated layer indices, e.g. 0,6,11" })
      .option("hooks", { type: "string", default: "resid_post", description: `Comma-separated hooks: ${HOOK_NAMES.join(", ")}` })
      .option("prompts", { type: "string", demandOption: true, description: ".txt (one per line) or .jsonl (prompt/text, or input_ids)" })
      .option("out", { type: "string", demandOption: true, description: "Store folder to create" })
      .option("dtype", { type: "string", choices: ["fp32", "bf16", "fp16"], default: "fp32", description: "Stored dtype" })
      .option("shard-rows", { type: "number", description: "Rows per shard (default: ~256 MiB of fp32 per shard)" })
      .option("max-length", { type: "number", description: "Keep the first N tokens of each prompt" })
      .option("batch-size", { type: "number", default: 16, description: "Prompts per forward at most" })
      .option("max-batch-tokens", { type: "number", default: 8192, description: "Padded tokens per forward at most" })
      .option("skip-bos", { type: "boolean", default: true, description: "Leave out the BOS token (--no-skip-bos keeps it)" })
      .option("special-tokens", { type: "boolean", default: true, description: "Add the tokenizer's special tokens (BOS) when encoding" })
      .option("tokenizer", { type: "string", description: "Folder with tokenizer.json (default: the model folder)" })
      .option("limit", { type: "number", description: "Use the first N prompts only" })
      .option("overwrite", { type: "boolean", description: "Replace an existing store at --out" })
      .strict(),
  handler: async (args) => {
    const layers = parseList(args.layers, "layers").map((x) => {
      const n = Number(x);
      if (!Number.isInteger(n) || n < 0) throw new InputError(`--layers: '${x}' is not a layer index`);
      return n;
    });
    const hooks = parseList(args.hooks, "hooks");
    for (const h of hooks) {
      if (!(HOOK_NAMES as readonly string[]).includes(h)) throw new InputError(`--hooks: unknown hook '${h}' (expected ${HOOK_NAMES.join(", ")})`);
    }
    let prompts = await readPromptItems(args.prompts);
    if (args.limit !== undefined) {
      if (!Number.isInteger(args.limit) || args.limit < 1) throw new InputError(`--limit: expected an integer >= 1, got ${args.limit}`);
      prompts = prompts.slice(0, args.limit) as string[] | number[][];
    }
    const text = typeof prompts[0] === "string";
    const tok = text ? await Tokenizer.fromModelDir(args.tokenizer ?? args.model) : null;
    const model = await loadModelFromArgs(args);
    const bar = progress(`extract ${model.info.precision}`);
    try {
      const t0 = performance.now();
      const m = await extractActivations(model, tok, prompts, {
        out: args.out,
        layers,
        hooks: hooks as ExtractHook[],
        dtype: args.dtype as StoreDtype,
        shardRows: args["shard-rows"],
        maxLength: args["max-length"],
        batchSize: args["batch-size"],
        maxBatchTokens: args["max-batch-tokens"],
        skipBos: args["skip-bos"],
        addSpecialTokens: args["special-tokens"],
        overwrite: args.overwrite,
        onProgress: bar.update,
      });
      bar.stop();
      const s = (performance.now() - t0) / 1000;
      const bytes = m.n_tokens * m.d_model * (m.dtype === "fp32" ? 4 : 2) * m.hooks.length * m.layers.length;
      process.stderr.write(
        `wrote ${args.out}: ${m.n_tokens} tokens from ${m.n_prompts} prompts, ${m.hooks.length * m.layers.length} activation${m.hooks.length * m.layers.length === 1 ? "" : "s"} [N, ${m.d_model}] ${m.dtype} in ${m.shards.length} shard(s), ${formatBytes(bytes)} (${(m.n_tokens / s).toFixed(0)} tokens/s)\n`,
      );
    } finally {
      bar.stop();
      model.dispose();
    }
  },
};

/** A cli-progress bar on a TTY; elsewhere a plain line at most every 5 s (and at the end). */
function progress(label: string): { update: (p: Progress) => void; stop: () => void } {
  const t0 = Date.now();
  const rate = (done: number) => done / Math.max(1e-3, (Date.now() - t0) / 1000);
  const eta = (p: Progress) => {
    const r = rate(p.done);
    return r > 0 && p.total > p.done ? Math.round((p.total - p.done) / r) : 0;
  };
  if (!process.stderr.isTTY) {
    let last = 0;
    return {
      update: (p) => {
        const now = Date.now();
        if (now - last < 5000 && p.done < p.total) return;
        last = now;
        process.stderr.write(`${label}: ${p.done}/${p.total} tokens (${Math.round(rate(p.done))} tokens/s, eta ${eta(p)}s)\n`);
      },
      stop: () => undefined,
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} |{bar}| {percentage}% {value}/{total} tokens  {rate} tokens/s  eta {etaText}`,
      hideCursor: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let stopped = false;
  return {
    update: (p) => {
      if (!started) {
        bar.start(p.total, 0, { rate: "0", etaText: "-" });
        started = true;
      }
      // Our own ETA from the mean rate: cli-progress's is NaN before the first tokens arrive.
      bar.update(p.done, { rate: Math.round(rate(p.done)), etaText: p.done > 0 ? `${eta(p)}s` : "-" });
    },
    stop: () => {
      if (started && !stopped) bar.stop();
      stopped = true;
    },
  };
}
