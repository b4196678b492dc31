// qsae forward MODEL --precision P --input-ids FILE --out FILE: logits [B,T,V] F32 and hidden.{i} [B,T,D] F32
// (the residual after block i, before the final norm) for the input_ids [B,T] I64 of a safetensors file.
import type { CommandModule } from "yargs";

import { InputError } from "../../src/errors.js";
import { loadSafetensors, saveSafetensors } from "../../src/io/safetensors.js";
import { type ComputeDtype, Model, type Precision, PRECISIONS } from "../../src/model/model.js";
import type { Tensor } from "../../src/tensor.js";

interface Args {
  model: string;
  precision?: string;
  "compute-dtype"?: string;
  device?: string;
  "input-ids": string;
  out: string;
  hidden?: boolean;
}

export const forwardCommand: CommandModule<object, Args> = {
  command: "forward <model>",
  describe: "Run a forward pass: logits and hidden.{i} for the input_ids of a safetensors file",
  builder: (y) =>
    y
      .positional("model", { type: "string", demandOption: true, description: "Hugging Face model folder" })
      .option("precision", { type: "string", choices: [...PRECISIONS], description: "Default: the checkpoint's dtype" })
      .option("compute-dtype", { type: "string", choices: ["fp32", "bf16", "fp16"], description: "For int8/nf4/fp4 (default: fp32 on CPU, bf16 on CUDA)" })
      .option("device", { type: "string", default: "cpu", description: "cpu | cuda | cuda:N" })
      .option("input-ids", { type: "string", demandOption: true, description: "safetensors with input_ids [B, T] I64 (and optional attention_mask)" })
      .option("out", { type: "string", demandOption: true, description: "Output safetensors: logits, hidden.{i}" })
      .option("hidden", { type: "boolean", default: true, description: "Also write hidden.{i}" })
      .strict(),
  handler: async (args) => {
    const input = await loadSafetensors(args["input-ids"]);
    const ids = input.tensors.input_ids;
    if (!ids) throw new InputError(`${args["input-ids"]}: no tensor 'input_ids'`);
    if (ids.dtype !== "int64" || ids.shape.length !== 2) {
      throw new InputError(`${args["input-ids"]}: input_ids must be I64 [B, T], got ${ids.dtype} [${ids.shape.join(", ")}]`);
    }
    const mask = input.tensors.attention_mask;
    const model = await Model.load(args.model, {
      precision: args.precision as Precision | undefined,
      computeDtype: args["compute-dtype"] as ComputeDtype | undefined,
      device: args.device,
    });
    try {
      const r = await model.forward(ids, { hidden: args.hidden, attentionMask: mask });
      const out: Record<string, Tensor> = { logits: r.logits };
      r.hidden?.forEach((h, i) => (out[`hidden.${i}`] = h));
      await saveSafetensors(args.out, out, {
        model: model.info.path,
        architecture: model.info.architecture,
        precision: model.info.precision,
        compute_dtype: model.info.computeDtype,
        config_hash: model.info.configHash,
        weights_hash: model.info.weightsHash,
      });
      process.stderr.write(
        `wrote ${args.out}: logits [${r.logits.shape.join(", ")}]${r.hidden ? ` + ${r.hidden.length} hidden states` : ""} (${model.info.architecture}, ${model.info.precision}, compute ${model.info.computeDtype})\n`,
      );
      for (const t of Object.values(out)) t.dispose();
    } finally {
      model.dispose();
    }
  },
};
