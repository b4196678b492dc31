// The model options shared by every command that loads a model (precision, compute dtype, device,
// quantization settings), and the Model.load call they map to.
import type { Argv } from "yargs";

import { type ComputeDtype, Model, type Precision, PRECISIONS } from "../src/model/model.js";

export interface ModelArgs {
  model: string;
  precision?: string;
  "compute-dtype"?: string;
  device?: string;
  devices?: string;
  blocksize?: number;
  "double-quant"?: boolean;
  "int8-threshold"?: number;
}

/** What withModelOptions adds to a command's parsed arguments. */
export interface ParsedModelArgs {
  model: string;
  precision: string | undefined;
  "compute-dtype": string | undefined;
  device: string;
  devices: string | undefined;
  blocksize: number | undefined;
  "double-quant": boolean | undefined;
  "int8-threshold": number | undefined;
}

export function withModelOptions<T>(y: Argv<T>): Argv<T & ParsedModelArgs> {
  return y
    .positional("model", { type: "string", demandOption: true, description: "Hugging Face model folder" })
    .option("precision", { type: "string", choices: [...PRECISIONS], description: "Default: the checkpoint's dtype" })
    .option("compute-dtype", { type: "string", choices: ["fp32", "bf16", "fp16"], description: "For int8/nf4/fp4 (default: fp32 on CPU, bf16 on CUDA)" })
    .option("device", { type: "string", default: "cpu", description: "cpu | cuda | cuda:N" })
    .option("devices", { type: "string", description: "Split the layers over several devices, e.g. cuda:0,cuda:1 (overrides --device)" })
    .option("blocksize", { type: "number", description: "nf4/fp4 block size (default 64)" })
    .option("double-quant", { type: "boolean", description: "nf4/fp4: quantize the absmax too" })
    .option("int8-threshold", { type: "number", description: "int8 outlier threshold (default 6.0)" }) as unknown as Argv<T & ParsedModelArgs>;
}

export function loadModelFromArgs(args: ModelArgs): Promise<Model> {
  return Model.load(args.model, {
    precision: args.precision as Precision | undefined,
    computeDtype: args["compute-dtype"] as ComputeDtype | undefined,
    device: args.device,
    devices: args.devices ? args.devices.split(",").map((d) => d.trim()).filter((d) => d !== "") : undefined,
    blocksize: args.blocksize,
    doubleQuant: args["double-quant"],
    int8Threshold: args["int8-threshold"],
  });
}
