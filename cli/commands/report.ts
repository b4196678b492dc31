// qsae report RUNDIR: merge the run folder's finished cells into results.json/csv and a self-contained report.html.
import type { CommandModule } from "yargs";


interface Args {
  rundir: string;
  out?: string;
}

export const reportCommand: CommandModule<object, Args> = {
  command: "report <rundir>",
  describe: "Write results.json/csv and a self-contained report.html (inline SVG charts) from a run folder",
  builder: (y) =>
    y
      .positional("rundir", { type: "string", demandOption: true, description: "Run folder written by 'qsae run'" })
      .option("out", { type: "string", description: "Report file (default: RUNDIR/report.html)" })
      .strict(),
  handler: async (args) => {
    const { writeReport } = await import("../../src/report/index.js");
    const r = await writeReport(args.rundir, args.out);
    if (!r.complete) process.stderr.write(`qsae: note: ${r.missing.length} cell(s) are not done yet; the report shows what is\n`);
    process.stdout.write(`${r.path}\n`);
  },
};
