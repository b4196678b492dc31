// qsae demo: the whole pipeline on the bundled default model and data, on CPU, ending with report.html.
import { resolve } from "node:path";

import type { CommandModule } from "yargs";
import { onInterrupt } from "../interrupt.js";


interface Args {
  out: string;
  quick?: boolean;
  "log-json"?: boolean;
}

export const demoCommand: CommandModule<object, Args> = {
  command: "demo",
  describe: "Run the whole study on the bundled default model on CPU (4 precisions, 3 layers, SAEs 0.5x and 2x, transfer, loss recovered, 3 benchmarks) and write report.html",
  builder: (y) =>
    y
      .option("out", { type: "string", default: "runs/demo", description: "Run folder (resumes when it exists)" })
      .option("quick", { type: "boolean", description: "A smaller run (fewer prompts, epochs and benchmark items) for a first look" })
      .option("log-json", { type: "boolean", description: "Progress as JSON lines on stderr" })
      .strict(),
  handler: async (args) => {
    const { demoConfig } = await import("../../src/pipeline/demo.js");
    const { runExperiment } = await import("../../src/pipeline/index.js");
    const config = demoConfig({ quick: args.quick });
    const intr = onInterrupt("interrupted: finished cells are kept; run 'qsae demo' again to resume");
    try {
      const r = await runExperiment(config, {
        out: resolve(args.out),
        progress: args["log-json"] ? "json" : process.stderr.isTTY ? "tty" : "plain",
        signal: intr.signal,
      });
      process.stdout.write(`\n${r.summary}\n\nreport: ${r.reportPath}\n`);
    } finally {
      intr.release();
    }
  },
};
