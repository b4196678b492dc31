// qsae train: one SAE or a grid (expansions x L1 values) in one pass over an activation store.
import { existsSync, statSync } from "node:fs";
import type { CommandModule } from "yargs";

import { InputError } from "../../src/errors.js";
import { parseTrainProgress, trainSae, type SaeArchitecture, type TrainSaeResult } from "../../src/sae/index.js";
import { formatTable, printJson } from "../output.js";
import { onInterrupt } from "../interrupt.js";
import { progressBar } from "../progress.js";

interface Args {
  acts: string;
  hook?: string;
  layer?: number;
  type: string;
  expansion: string;
  l1?: string;
  k?: number;
  epochs?: number;
  tokens?: number;
  "batch-size"?: number;
  lr?: number;
  seed?: number;
  out: string;
  resume?: boolean;
  "l1-norm-weighted"?: boolean;
  "apply-b-dec"?: boolean;
  "resample-every"?: number;
  "buffer-rows"?: number;
  "checkpoint-every"?: number;
  device?: string;
  json?: boolean;
}

function numberList(s: string, what: string): number[] {
  const v = s.split(",").map((x) => x.trim()).filter(Boolean).map(Number);
  if (v.length === 0 || v.some((x) => !Number.isFinite(x) || x < 0)) {
    throw new InputError(`--${what}: expected a comma-separated list of non-negative numbers, got '${s}'`);
  }
  return v;
}

/** Where the trainer keeps its checkpoint (native/sae/trainer.cpp checkpoint_path: OUT without trailing '/'). */
export function checkpointPath(out: string): string {
  return `${out.replace(/(.)\/+$/, "$1")}.checkpoint.safetensors`;
}

/** The abort error to report after Ctrl-C: whether a checkpoint was written, and how to continue. */
function interruptedError(out: string, since: number): Error {
  const ckpt = checkpointPath(out);
  let msg = "interrupted before the first step; nothing was saved";
  if (existsSync(ckpt)) {
    msg =
      statSync(ckpt).mtimeMs >= since - 1000
        ? `interrupted; checkpoint saved to ${ckpt} — rerun the same command with --resume to continue`
        : `interrupted before the first step; the earlier checkpoint ${ckpt} is kept — rerun the same command with --resume to continue from it`;
  }
  return Object.assign(new Error(msg), { name: "AbortError" });
}

/** "<steps> steps, <tokens> tokens ..." with run totals, and this session's share when resumed. */
export function summaryLine(r: TrainSaeResult): string {
  const rate = `${r.seconds.toFixed(1)} s (${Math.round(r.tokensPerSecond)} tok/s)`;
  if (!r.resumedFrom) return `${r.steps} steps, ${r.tokens} tokens in ${rate}`;
  return `${r.steps} steps, ${r.tokens} tokens; this session ${r.sessionTokens} tokens in ${rate}, resumed at step ${r.resumedFrom}`;
}

export const trainCommand: CommandModule<object, Args> = {
  command: "train",
  describe: "Train SAEs (relu, topk, batchtopk, jumprelu) on an activation store; a grid trains in one data pass",
  builder: (y) =>
    y
      .option("acts", { type: "string", demandOption: true, description: "Activation store folder or .safetensors with acts [N, D]" })
      .option("hook", { type: "string", description: "Hook of the store (when it holds several)" })
      .option("layer", { type: "number", description: "Layer of the store (when it holds several)" })
      .option("type", { type: "string", default: "relu", choices: ["relu", "topk", "batchtopk", "jumprelu"], description: "SAE type" })
      .option("expansion", { type: "string", default: "0.5", description: "d_sae / d_in; a list (0.5,1,2,4,8) trains a grid" })
      .option("l1", { type: "string", description: "L1 coefficient(s) (relu; jumprelu's L0 weight); a list adds to the grid [5e-4]" })
      .option("k", { type: "number", description: "Active latents per token for topk/batchtopk [32]" })
      .option("epochs", { type: "number", description: "Passes over the activations" })
      .option("tokens", { type: "number", description: "Token budget (instead of --epochs)" })
      .option("batch-size", { type: "number", description: "Tokens per step [4096]" })
      .option("lr", { type: "number", description: "Adam learning rate [1e-3]" })
      .option("seed", { type: "number", description: "Seed (deterministic on CPU for a seed and thread count) [0]" })
      .option("out", { type: "string", demandOption: true, description: "SAE folder (a grid: one sub-folder per SAE)" })
      .option("resume", { type: "boolean", description: "Continue from OUT.checkpoint.safetensors" })
      .option("l1-norm-weighted", { type: "boolean", description: "Weight the L1 by decoder row norms instead of unit-norm rows" })
      .option("apply-b-dec", { type: "boolean", description: "Subtract b_dec from the input before encoding" })
      .option("resample-every", { type: "number", description: "relu: resample dead latents every N steps" })
      .option("buffer-rows", { type: "number", description: "Shuffle buffer rows (default: up to 256 MiB)" })
      .option("checkpoint-every", { type: "number", description: "Steps between checkpoints (default: every 60 s)" })
      .option("device", { type: "string", description: "cpu (default), cuda, cuda:N" })
      .option("json", { type: "boolean", description: "Print the result as JSON" })
      .check((a) => {
        if ((a.epochs === undefined) === (a.tokens === undefined)) throw new Error("give exactly one of --epochs or --tokens");
        return true;
      })
      .strict(),
  handler: async (args) => {
    const intr = onInterrupt();
    const since = Date.now();
    // progress on stderr: a bar on a TTY, else a line at most every 5 s (and the last); none with --json
    const bar = args.json ? undefined : progressBar("train", 0, "tok");
    try {
      const r = await trainSae({
        acts: args.acts,
        hook: args.hook,
        layer: args.layer,
        type: args.type as SaeArchitecture,
        expansion: numberList(args.expansion, "expansion"),
        l1: args.l1 !== undefined ? numberList(args.l1, "l1") : undefined,
        k: args.k,
        epochs: args.epochs,
        tokens: args.tokens,
        batchSize: args["batch-size"],
        lr: args.lr,
        seed: args.seed,
        out: args.out,
        resume: args.resume,
        l1NormWeighted: args["l1-norm-weighted"],
        applyBDecToInput: args["apply-b-dec"],
        resampleEvery: args["resample-every"],
        bufferRows: args["buffer-rows"],
        checkpointEvery: args["checkpoint-every"],
        device: args.device,
        signal: intr.signal,
        onProgress: bar
          ? (p) => {
              const t = parseTrainProgress(p);
              if (!t) return;
              const msg = `loss ${t.loss.toFixed(4)}  L0 ${t.l0.toFixed(1)}  dead ${(100 * t.dead).toFixed(1)}%`;
              // the native rate counts this session's tokens only (right after --resume too)
              bar.update(t.tokens, msg, t.totalTokens, t.tokensPerSecond);
            }
          : undefined,
      }).catch((e: unknown) => {
        if (intr.signal.aborted && e instanceof Error && e.name === "AbortError") throw interruptedError(args.out, since);
        throw e;
      });
      bar?.stop();
      if (args.json) {
        printJson(r);
        return;
      }
      // mse, l0: the trainer's running averages over the last steps; l1 coef: the penalty's coefficient
      const rows = r.saes.map((s) => [s.name, s.dSae, s.l1, Number(s.mse.toPrecision(5)), Number(s.l0.toFixed(2)), Number((100 * s.deadFraction).toFixed(1)), s.folder]);
      process.stdout.write(`${formatTable(["sae", "d_sae", "l1 coef", "mse", "l0", "dead %", "folder"], rows)}\n`);
      process.stdout.write(`${summaryLine(r)}\n`);
    } finally {
      bar?.stop();
      intr.release();
    }
  },
};
