// qsae command line: yargs, one command per file under cli/commands. Errors print one line
// ("qsae: <message>") and exit non-zero; --verbose adds the stack.
import yargs from "yargs";
import type { CommandModule } from "yargs";

import { VERSION } from "../src/version.js";
import { commands } from "./commands/index.js";

export async function main(argv: string[]): Promise<void> {
  const verbose = argv.includes("--verbose");
  try {
    let y = yargs(argv)
      .scriptName("qsae")
      .usage("$0 <command> [options]\n\nWhat breaks when an LLM is quantized, and do SAEs trained at full precision still work?")
      .version(VERSION)
      .option("verbose", { type: "boolean", description: "Print stack traces with errors", global: true })
      .strict()
      .demandCommand(1, "Name a command (qsae --help lists them)")
      .recommendCommands()
      .wrap(Math.min(110, process.stdout.columns || 100))
      .fail((msg, err, yy) => {
        if (err) throw err;
        process.stderr.write(`${yy.help() ? "" : ""}qsae: ${msg}\nRun 'qsae --help' for usage.\n`);
        process.exit(2);
      });
    for (const c of commands) y = y.command(c as CommandModule);
    await y.parseAsync();
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    process.stderr.write(`qsae: ${err.message.replace(/^qsae: /, "")}\n`);
    if (verbose && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = err.name === "AbortError" ? 130 : 1;
  }
}
