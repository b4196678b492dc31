// qsae inspect PATH: tensors of a .safetensors file or an HF model folder (sharded folders as one model).
import type { CommandModule } from "yargs";

import { inspectCheckpoint } from "../../src/io/safetensors.js";
import { formatBytes, formatCount, formatTable, printJson } from "../output.js";

interface Args {
  path: string;
  json?: boolean;
}

export const inspectCommand: CommandModule<object, Args> = {
  command: "inspect <path>",
  describe: "List the tensors of a .safetensors file or an HF model folder: name, dtype, shape, totals",
  builder: (y) =>
    y
      .positional("path", { type: "string", demandOption: true, description: "A .safetensors file, index.json or model folder" })
      .option("json", { type: "boolean", description: 'Print {"tensors":[{name,dtype,shape}],"parameters","bytes"}' })
      .strict(),
  handler: async (args) => {
    const r = await inspectCheckpoint(args.path);
    if (args.json) {
      printJson({
        path: r.path,
        shards: r.shards,
        tensors: r.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
        parameters: r.parameters,
        bytes: r.bytes,
        metadata: r.metadata,
      });
      return;
    }
    const rows = r.tensors.map((t) => [t.name, t.dtype, `[${t.shape.join(", ")}]`]);
    process.stdout.write(`${formatTable(["tensor", "dtype", "shape"], rows)}\n\n`);
    process.stdout.write(
      `${r.tensors.length} tensors in ${r.shards.length} file(s), ${formatCount(r.parameters)} parameters, ${formatBytes(r.bytes)}\n`,
    );
  },
};
