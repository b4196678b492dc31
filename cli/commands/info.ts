// qsae info: versions, BLAS, threads, CUDA.
import type { CommandModule } from "yargs";

import { info } from "../../src/runtime.js";
import { formatBytes, printJson } from "../output.js";

interface Args {
  json?: boolean;
}

export const infoCommand: CommandModule<object, Args> = {
  command: "info",
  describe: "Show qsae and libtorch versions, the BLAS in use, threads and CUDA devices",
  builder: (y) => y.option("json", { type: "boolean", description: "Machine-readable output" }).strict(),
  handler: (args) => {
    const r = info();
    if (args.json) {
      printJson(r);
      return;
    }
    const lines = [
      `qsae     ${r.qsaeVersion}`,
      `libtorch ${r.torchVersion}`,
      `BLAS     ${r.blas}${r.blasLibrary ? ` (${r.blasLibrary})` : ""}`,
      `threads  ${r.threads}`,
      `CPU      ${r.cpuFeatures || "(no AVX2/FMA)"}`,
      `CUDA     ${r.cudaAvailable ? `available, ${r.cudaDevices.length} device(s)` : r.cudaBuilt ? "built, but no GPU is visible" : "not built (CPU only)"}`,
      ...r.cudaDevices.map((d) => `  cuda:${d.index} ${d.name} (sm_${d.computeCapability.replace(".", "")}, ${formatBytes(d.totalMemory)})`),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  },
};
