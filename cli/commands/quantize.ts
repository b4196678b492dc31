// qsae quantize IN OUT: a .safetensors file or an HF model folder into bitsandbytes' NF4/FP4/LLM.int8 layout.
import type { CommandModule } from "yargs";

import { quantizeCheckpoint, type QuantFormat } from "../../src/quant/index.js";
import { formatBytes, printJson } from "../output.js";
import { progressBar } from "../progress.js";
import { onInterrupt } from "../interrupt.js";

interface Args {
  input: string;
  output: string;
  format: string;
  blocksize: number;
  "double-quant": boolean;
  threshold: number;
  json?: boolean;
}

export const quantizeCommand: CommandModule<object, Args> = {
  command: "quantize <input> <output>",
  describe: "Quantize a .safetensors file or an HF model folder to NF4/FP4/int8 in the HF + bitsandbytes layout",
  builder: (y) =>
    y
      .positional("input", { type: "string", demandOption: true, description: "A .safetensors file or an HF model folder" })
      .positional("output", {
        type: "string",
        demandOption: true,
        description: "Output .safetensors file (for a file) or folder (for a model); written atomically",
      })
      .option("format", { type: "string", choices: ["nf4", "fp4", "int8"], default: "nf4", description: "Quantization format" })
      .option("blocksize", { type: "number", default: 64, description: "4-bit block size (power of two, 32..4096)" })
      .option("double-quant", {
        type: "boolean",
        default: false,
        description: "4-bit: also quantize the absmax statistics (8-bit, blocksize 256)",
      })
      .option("threshold", { type: "number", default: 6.0, description: "LLM.int8 outlier threshold recorded in the config" })
      .option("json", { type: "boolean", description: "Print a JSON report" })
      .strict(),
  handler: async (args) => {
    const intr = onInterrupt();
    const bar = args.json ? undefined : progressBar("quantize", 0, "tensors");
    try {
      const r = await quantizeCheckpoint(args.input, args.output, {
        format: args.format as QuantFormat,
        blocksize: args.blocksize,
        doubleQuant: args["double-quant"],
        threshold: args.threshold,
        signal: intr.signal,
        onProgress: bar ? (p) => bar.update(p.done, "", p.total) : undefined,
      });
      bar?.stop();
      if (args.json) {
        printJson({ ...r, format: args.format, blocksize: args.format === "int8" ? null : args.blocksize });
        return;
      }
      process.stdout.write(
        `${r.out}: ${r.quantized.length} tensors quantized to ${args.format}` +
          `${args.format === "int8" ? "" : ` (blocksize ${args.blocksize}${args["double-quant"] ? ", double quant" : ""})`}, ` +
          `${r.kept.length} kept; ${formatBytes(r.bytesIn)} -> ${formatBytes(r.bytesOut)}\n`,
      );
    } finally {
      bar?.stop();
      intr.release();
    }
  },
};
