// qsae eval-sae SAE --acts PATH: reconstruction metrics of an SAE on activations.
import type { CommandModule } from "yargs";

import { evalSae } from "../../src/sae/index.js";
import { formatTable, printJson } from "../output.js";

interface Args {
  sae: string;
  acts: string;
  hook?: string;
  layer?: number;
  "batch-size"?: number;
  json?: boolean;
}

export const evalSaeCommand: CommandModule<object, Args> = {
  command: "eval-sae <sae>",
  describe: "Evaluate an SAE folder (qsae or SAELens) on activations: mse, explained variance, L0, L1, dead fraction",
  builder: (y) =>
    y
      .positional("sae", { type: "string", demandOption: true, description: "SAE folder" })
      .option("acts", { type: "string", demandOption: true, description: "Activation store folder or .safetensors with acts [N, D]" })
      .option("hook", { type: "string", description: "Hook of the store (when it holds several)" })
      .option("layer", { type: "number", description: "Layer of the store (when it holds several)" })
      .option("batch-size", { type: "number", description: "Tokens per batch [4096]" })
      .option("json", { type: "boolean", description: "Print {mse, explained_variance, l0, l1, dead_fraction, ...}" })
      .strict(),
  handler: async (args) => {
    const ac = new AbortController();
    const onSigint = () => ac.abort();
    process.once("SIGINT", onSigint);
    try {
      const r = await evalSae(args.sae, args.acts, { hook: args.hook, layer: args.layer, batchSize: args["batch-size"], signal: ac.signal });
      if (args.json) {
        printJson(r);
        return;
      }
      const rows: (string | number)[][] = [
        ["mse", r.mse.toPrecision(5)],
        ["explained_variance", r.explained_variance.toFixed(4)],
        ["l0", r.l0.toFixed(2)],
        ["l1", r.l1.toPrecision(5)],
        ["dead_fraction", r.dead_fraction.toFixed(4)],
        ["tokens", String(r.n_tokens)],
        ["d_in / d_sae", `${r.d_in} / ${r.d_sae}`],
      ];
      process.stdout.write(`${formatTable(["metric", "value"], rows)}\n`);
    } finally {
      process.off("SIGINT", onSigint);
    }
  },
};
