// qsae transfer: how well one SAE describes the activations of the same tokens at two precisions.
import type { CommandModule } from "yargs";

import { TRANSFER_METRICS, transferWithDetails } from "../../src/analysis/index.js";
import type { Progress } from "../../src/native/cancel.js";
import { formatTable, printJson } from "../output.js";
import { onInterrupt } from "../interrupt.js";

interface Args {
  sae: string;
  "acts-a": string;
  "acts-b": string;
  hook?: string;
  layer?: number;
  k?: number;
  resamples?: number;
  seed?: number;
  device?: string;
  json?: boolean;
}

/** A one-line progress display on stderr (only on a terminal). */
export function progressLine(): ((p: Progress) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  return (p) => {
    const pct = p.total > 0 ? ` ${((100 * p.done) / p.total).toFixed(0)}%` : "";
    const msg = p.message ? ` ${p.message}` : "";
    process.stderr.write(`\r\x1b[K${p.stage}${pct} (${Math.round(p.done)}/${Math.round(p.total)} ${p.unit})${msg}`);
  };
}

export function clearProgress(): void {
  if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
}

const fmt = (v: number | null, digits = 4) => (v === null ? "n/a" : v.toFixed(digits));

export const transferCommand: CommandModule<object, Args> = {
  command: "transfer",
  describe: "Transfer metrics of one SAE over token-aligned activations at two precisions, with bootstrap 95% CIs",
  builder: (y) =>
    y
      .option("sae", { type: "string", demandOption: true, description: "SAE folder (qsae or SAELens)" })
      .option("acts-a", { type: "string", demandOption: true, description: "Activation store or .safetensors (precision A)" })
      .option("acts-b", { type: "string", demandOption: true, description: "Activation store or .safetensors (precision B)" })
      .option("hook", { type: "string", description: "Hook of the store (needed when it holds several)" })
      .option("layer", { type: "number", description: "Layer of the store (needed when it holds several)" })
      .option("k", { type: "number", default: 10, description: "k of topk_agreement" })
      .option("resamples", { type: "number", default: 1000, description: "Bootstrap resamples (0: no intervals)" })
      .option("seed", { type: "number", description: "Bootstrap seed (fixed by default)" })
      .option("device", { type: "string", description: "Where the SAE encodes: cpu (default), cuda, cuda:N" })
      .option("json", { type: "boolean", description: "Print one JSON object: the metrics, n_tokens, n_features, ci95" })
      .strict(),
  handler: async (args) => {
    const onProgress = progressLine();
    const intr = onInterrupt();
    try {
      const { result, details } = await transferWithDetails({
        sae: args.sae,
        actsA: args["acts-a"],
        actsB: args["acts-b"],
        hook: args.hook,
        layer: args.layer,
        k: args.k,
        resamples: args.resamples,
        seed: args.seed,
        device: args.device,
        signal: intr.signal,
        onProgress,
      });
      clearProgress();
      if (args.json) {
        printJson(result);
        return;
      }
      const rows = TRANSFER_METRICS.map((m) => {
        const [lo, hi] = result.ci95[m];
        return [m, fmt(result[m]), lo === null ? "" : `[${fmt(lo)}, ${fmt(hi)}]`];
      });
      process.stdout.write(`${formatTable(["metric", "value", "95% CI"], rows)}\n\n`);
      process.stdout.write(
        `${result.n_tokens} tokens, ${result.n_features} features, k=${details.k}; bootstrap: ${details.resamples} resamples of ` +
          `${details.units} ${details.unit === "doc" ? "prompts" : "tokens"}` +
          (details.groups < details.units ? ` (per-feature metrics over ${details.groups} groups of them)` : "") +
          "\n",
      );
    } finally {
      intr.release();
      clearProgress();
    }
  },
};
