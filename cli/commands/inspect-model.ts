// qsae inspect-model DIR --precision P: each module's precision and bytes and the expected total memory,
// from config.json and the safetensors headers only (no weights are read).
import type { CommandModule } from "yargs";

import { type ComputeDtype, planModel, type Precision, PRECISIONS } from "../../src/model/model.js";
import { formatBytes, formatTable, printJson } from "../output.js";

interface Args {
  dir: string;
  precision?: string;
  "compute-dtype"?: string;
  device?: string;
  blocksize?: number;
  "double-quant"?: boolean;
  json?: boolean;
}

export const inspectModelCommand: CommandModule<object, Args> = {
  command: "inspect-model <dir>",
  describe: "Per-module precision and bytes of a model at a precision, and the expected memory (reads no weights)",
  builder: (y) =>
    y
      .positional("dir", { type: "string", demandOption: true, description: "Hugging Face model folder" })
      .option("precision", { type: "string", choices: [...PRECISIONS], description: "Default: the checkpoint's dtype" })
      .option("compute-dtype", { type: "string", choices: ["fp32", "bf16", "fp16"], description: "For int8/nf4/fp4" })
      .option("device", { type: "string", default: "cpu", description: "Decides the default compute dtype" })
      .option("blocksize", { type: "number", default: 64, description: "4-bit block size" })
      .option("double-quant", { type: "boolean", default: false, description: "4-bit: quantize the absmax too" })
      .option("json", { type: "boolean", description: "Machine-readable output" })
      .strict(),
  handler: async (args) => {
    const p = await planModel(args.dir, {
      precision: args.precision as Precision | undefined,
      computeDtype: args["compute-dtype"] as ComputeDtype | undefined,
      device: args.device,
      blocksize: args.blocksize,
      doubleQuant: args["double-quant"],
    });
    // Loading holds the final weights plus, transiently, about two copies of the largest tensor.
    const peak = p.totalBytes + 2 * p.largestTensorBytes;
    if (args.json) {
      printJson({ ...p, expectedPeakLoadBytes: peak });
      return;
    }
    const rows = p.modules.map((m) => [m.name, m.precision, m.bytes]);
    process.stdout.write(`${formatTable(["module", "precision", "bytes"], rows)}\n\n`);
    const byPrecision = new Map<string, number>();
    for (const m of p.modules) byPrecision.set(m.precision, (byPrecision.get(m.precision) ?? 0) + m.bytes);
    process.stdout.write(
      `${p.architecture} (${p.modelType}), ${p.numLayers} layers, d_model ${p.hiddenSize}: precision ${p.precision}, compute ${p.computeDtype}${p.prequantized ? " (pre-quantized checkpoint)" : ""}\n` +
        `weights ${formatBytes(p.totalBytes)} (${[...byPrecision].map(([k, v]) => `${k} ${formatBytes(v)}`).join(", ")}); ` +
        `checkpoint ${formatBytes(p.checkpointBytes)}; expected peak while loading ${formatBytes(peak)}\n`,
    );
  },
};
