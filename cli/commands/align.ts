// qsae align: how similar two SAEs' dictionaries are (matched cosine, Procrustes alignment), decoder and encoder.
import type { CommandModule } from "yargs";

import { align } from "../../src/analysis/index.js";
import { formatTable, printJson } from "../output.js";
import { clearProgress, progressLine } from "./transfer.js";
import { onInterrupt } from "../interrupt.js";

interface Args {
  saeA: string;
  saeB: string;
  method?: "auto" | "exact" | "approx";
  "exact-max"?: number;
  json?: boolean;
}

export const alignCommand: CommandModule<object, Args> = {
  command: "align <saeA> <saeB>",
  describe: "Align two SAEs' dictionaries: matched cosine (linear assignment) and Procrustes alignment",
  builder: (y) =>
    y
      .positional("saeA", { type: "string", demandOption: true, description: "SAE folder A" })
      .positional("saeB", { type: "string", demandOption: true, description: "SAE folder B" })
      .option("method", {
        choices: ["auto", "exact", "approx"] as const,
        default: "auto" as const,
        description: "Assignment solver: exact up to --exact-max features, auction above (auto)",
      })
      .option("exact-max", { type: "number", description: "Largest M solved exactly in auto mode (default 4096)" })
      .option("json", {
        type: "boolean",
        description: "Print one JSON object: the metrics, n_features, assignment, gap_bound",
      })
      .strict(),
  handler: async (args) => {
    const intr = onInterrupt();
    try {
      const r = await align(args.saeA, args.saeB, {
        method: args.method,
        exactMax: args["exact-max"],
        signal: intr.signal,
        onProgress: progressLine(),
      });
      clearProgress();
      const out = {
        matched_cosine: r.matched_cosine,
        procrustes_alignment: r.procrustes_alignment,
        frac_cosine_ge_0_7: r.frac_cosine_ge_0_7,
        encoder_matched_cosine: r.encoder_matched_cosine,
        encoder_procrustes_alignment: r.encoder_procrustes_alignment,
        encoder_frac_cosine_ge_0_7: r.encoder_frac_cosine_ge_0_7,
        n_features: r.n_features,
        assignment: r.assignment,
        gap_bound: r.gap_bound,
        encoder_gap_bound: r.encoder_gap_bound,
      };
      if (args.json) {
        printJson(out);
        return;
      }
      const rows = [
        ["matched_cosine", r.matched_cosine.toFixed(4), r.encoder_matched_cosine.toFixed(4)],
        ["procrustes_alignment", r.procrustes_alignment.toFixed(4), r.encoder_procrustes_alignment.toFixed(4)],
        ["frac_cosine_ge_0_7", r.frac_cosine_ge_0_7.toFixed(4), r.encoder_frac_cosine_ge_0_7.toFixed(4)],
      ];
      process.stdout.write(`${formatTable(["metric", "decoder", "encoder"], rows)}\n\n`);
      process.stdout.write(
        `${r.n_features} features, d_in ${r.d_in}; assignment ${r.assignment}` +
          (r.assignment === "approx"
            ? ` (matched cosine within ${r.gap_bound.toExponential(2)} / ${r.encoder_gap_bound.toExponential(2)} of optimal)`
            : "") +
          "\n",
      );
    } finally {
      intr.release();
      clearProgress();
    }
  },
};
