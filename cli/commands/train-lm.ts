// qsae train-lm: trains a small Llama-style LM (and its BPE tokenizer) on a folder of source files.
import type { CommandModule } from "yargs";

import { trainLm } from "../../src/train/lm.js";
import { printJson } from "../output.js";
import { progressBar } from "../progress.js";

interface Args {
  corpus: string[];
  out: string;
  ext: string[];
  exclude: string[];
  "vocab-size": number;
  "d-model": number;
  layers: number;
  heads: number;
  "kv-heads": number;
  "ffn-size": number;
  "seq-len": number;
  "batch-size": number;
  steps: number;
  "warmup-steps": number;
  lr: number;
  "weight-decay": number;
  seed: number;
  "max-minutes"?: number;
  "save-dtype": "bf16" | "fp32" | "fp16";
  device: string;
  json?: boolean;
}

export const trainLmCommand: CommandModule<object, Args> = {
  command: "train-lm",
  describe: "Train a small Llama-style code LM with its own byte-level BPE tokenizer on a folder of files",
  builder: (y) =>
    y
      .option("corpus", { type: "string", array: true, demandOption: true, description: "Folders of training files (searched recursively)" })
      .option("out", { type: "string", demandOption: true, description: "Output model folder (HF layout)" })
      .option("ext", { type: "string", array: true, default: [".py"], description: "File extensions to include" })
      .option("exclude", { type: "string", array: true, default: ["/test/", "/tests/", "/idlelib/idle_test/", "site-packages", "dist-packages"], description: "Skip paths containing these" })
      .option("vocab-size", { type: "number", default: 4096 })
      .option("d-model", { type: "number", default: 256 })
      .option("layers", { type: "number", default: 6 })
      .option("heads", { type: "number", default: 4 })
      .option("kv-heads", { type: "number", default: 4 })
      .option("ffn-size", { type: "number", default: 688 })
      .option("seq-len", { type: "number", default: 256 })
      .option("batch-size", { type: "number", default: 16 })
      .option("steps", { type: "number", default: 2000 })
      .option("warmup-steps", { type: "number", default: 100 })
      .option("lr", { type: "number", default: 3e-3 })
      .option("weight-decay", { type: "number", default: 0.1 })
      .option("seed", { type: "number", default: 0 })
      .option("max-minutes", { type: "number", description: "Time limit: after a few timed steps the schedule is shortened to fit it" })
      .option("save-dtype", { choices: ["bf16", "fp32", "fp16"] as const, default: "bf16" as const })
      .option("device", { type: "string", default: "cpu", description: "Where to train: cpu, cuda, cuda:1, ... (TF32 matmuls on CUDA)" })
      .option("json", { type: "boolean", description: "Print the training report as JSON" })
      .check((a) => {
        if (a["d-model"] % a.heads !== 0) throw new Error(`--d-model ${a["d-model"]} is not divisible by --heads ${a.heads}`);
        if (a.heads % a["kv-heads"] !== 0) throw new Error(`--heads ${a.heads} is not divisible by --kv-heads ${a["kv-heads"]}`);
        return true;
      })
      .strict(),
  handler: async (a) => {
    const bar = progressBar("train", a.steps, "steps");
    const report = await trainLm({
      corpus: a.corpus,
      out: a.out,
      extensions: a.ext,
      exclude: a.exclude,
      arch: {
        vocabSize: a["vocab-size"],
        hiddenSize: a["d-model"],
        layers: a.layers,
        heads: a.heads,
        kvHeads: a["kv-heads"],
        intermediateSize: a["ffn-size"],
        maxPositions: Math.max(1024, a["seq-len"]),
        ropeTheta: 10000,
      },
      seqLen: a["seq-len"],
      batchSize: a["batch-size"],
      steps: a.steps,
      warmupSteps: a["warmup-steps"],
      lr: a.lr,
      weightDecay: a["weight-decay"],
      seed: a.seed,
      maxSeconds: a["max-minutes"] ? a["max-minutes"] * 60 : undefined,
      saveDtype: a["save-dtype"],
      device: a.device,
      command: `qsae ${process.argv.slice(2).join(" ")}`,
      log: (l) => bar.log(l),
      onProgress: (p) => bar.update(p.done, p.message, p.total),
    });
    bar.stop();
    if (a.json) {
      printJson(report);
      return;
    }
    process.stdout.write(
      `${a.out}: ${report.parameters} parameters, ${report.result.steps} steps (${report.result.tokens} tokens) in ${report.result.seconds.toFixed(0)} s\n` +
        `held-out loss ${report.heldout_loss_nats.toFixed(4)} nats/token = ${report.heldout_bits_per_byte.toFixed(3)} bits/byte (unigram baseline ${report.unigram_bits_per_byte.toFixed(3)})\n`,
    );
  },
};
