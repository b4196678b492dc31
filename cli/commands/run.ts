// qsae run CONFIG: the whole experiment as a DAG of cached, resumable, shardable cells.
import type { CommandModule } from "yargs";

import { InputError } from "../../src/errors.js";
import { parseShard, shardFromEnv } from "../../src/pipeline/cells.js";
import type { ProgressMode } from "../../src/pipeline/progress.js";
import { onInterrupt } from "../interrupt.js";

// The pipeline (and vega, for the report) load only when the command runs.
const STAGES = ["extract", "train", "transfer", "align", "splice", "bench", "compare"];

interface Args {
  config: string;
  out?: string;
  resume?: boolean;
  shard?: string;
  only?: string[];
  check?: boolean;
  "log-json"?: boolean;
  devices?: string;
  "no-report"?: boolean;
}

export const runCommand: CommandModule<object, Args> = {
  command: "run <config>",
  describe: "Run an experiment (models × precisions × layers × SAE grid × benchmarks) from a YAML/JSON config into a resumable run folder",
  builder: (y) =>
    y
      .positional("config", { type: "string", demandOption: true, description: "Experiment config (.yaml, .yml or .json)" })
      .option("out", { type: "string", description: "Run folder (default: the config's 'out', else runs/<name>)" })
      .option("resume", { type: "boolean", default: true, description: "Skip cells already finished in the run folder; --no-resume recomputes them" })
      .option("shard", { type: "string", description: "Run shard i/N of the cells (0-based; default from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT)" })
      .option("only", { type: "string", array: true, choices: [...STAGES], description: "Run only these stages (their inputs must be done)" })
      .option("devices", { type: "string", description: "Comma-separated devices, one cell at a time on each (e.g. cuda:0,cuda:1); default: the config's" })
      .option("check", { type: "boolean", description: "Validate the config, model folders and data paths, print the plan, and stop" })
      .option("log-json", { type: "boolean", description: "Progress as JSON lines on stderr (machine logs)" })
      .strict(),
  handler: async (args) => {
    let shard: { index: number; count: number } | undefined;
    try {
      shard = args.shard ? parseShard(args.shard) : (shardFromEnv() ?? undefined);
    } catch (e) {
      throw new InputError((e as Error).message);
    }
    const progress: ProgressMode = args["log-json"] ? "json" : process.stderr.isTTY ? "tty" : "plain";
    const intr = onInterrupt("interrupted: finished cells are kept; run again to resume", ["SIGINT", "SIGTERM"]);
    try {
      const { runExperiment } = await import("../../src/pipeline/index.js");
      const r = await runExperiment(args.config, {
        out: args.out,
        resume: args.resume,
        shard,
        only: args.only,
        devices: args.devices ? args.devices.split(",").map((s) => s.trim()).filter(Boolean) : undefined,
        check: args.check,
        progress,
        signal: intr.signal,
      });
      if (args.check) {
        const lines = [`${r.check.models.length} model(s), ${r.check.prompts} prompts${r.check.splicePrompts ? ` (splice: the first ${r.check.splicePrompts})` : ""}${Object.keys(r.check.benchmarks).length ? `, benchmarks: ${Object.entries(r.check.benchmarks).map(([k, v]) => `${k} ${v}`).join(", ")}` : ""}`];
        for (const m of r.check.models)
          lines.push(`  ${m.name}: ${m.numLayers} layers, capturing ${m.layers.join(", ")}; ${Object.entries(m.precisions).map(([p, x]) => `${p} ${(x.bytes / 2 ** 20).toFixed(1)} MiB`).join(", ")}`);
        lines.push(r.summary, "config OK");
        process.stdout.write(`${lines.join("\n")}\n`);
        return;
      }
      process.stdout.write(`\n${r.summary}\n\n`);
      process.stdout.write(`results: ${r.rundir}/results.json, results.csv\n`);
      if (r.reportPath) process.stdout.write(`report:  ${r.reportPath}\n`);
      else if (r.run && r.run.pending.length) process.stdout.write(`${r.run.pending.length} cell(s) are left to other shards; 'qsae report ${r.rundir}' merges when they are done\n`);
    } finally {
      intr.release();
    }
  },
};
