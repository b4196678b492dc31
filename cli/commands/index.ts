// Every qsae command, one module per file. Add new commands here.
import type { CommandModule } from "yargs";

import { alignCommand } from "./align.js";
import { transferCommand } from "./transfer.js";
import { benchCommand } from "./bench.js";
import { demoCommand } from "./demo.js";
import { forwardCommand } from "./forward.js";
import { extractCommand } from "./extract.js";
import { generateCommand } from "./generate.js";
import { evalSaeCommand } from "./eval-sae.js";
import { infoCommand } from "./info.js";
import { trainCommand } from "./train.js";
import { inspectCommand } from "./inspect.js";
import { inspectModelCommand } from "./inspect-model.js";
import { quantizeCommand } from "./quantize.js";
import { reportCommand } from "./report.js";
import { runCommand } from "./run.js";
import { trainLmCommand } from "./train-lm.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [infoCommand, inspectCommand, forwardCommand, generateCommand, extractCommand, inspectModelCommand, benchCommand, quantizeCommand, runCommand, reportCommand, demoCommand, trainLmCommand, trainCommand, evalSaeCommand, transferCommand, alignCommand];
