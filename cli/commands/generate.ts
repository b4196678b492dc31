// qsae generate MODEL --precision P --prompt TEXT [--chat] [--max-new-tokens N] [--temperature T --top-p P --seed S]:
// loads the model and its tokenizer and streams the completion to stdout (several prompts: one block each).
import type { CommandModule } from "yargs";

import { InputError } from "../../src/errors.js";
import { generate, generateIds } from "../../src/model/generate.js";
import type { GenerateOptions } from "../../src/model/generate.js";
import { readPrompts } from "../../src/model/prompts.js";
import { Tokenizer } from "../../src/model/tokenizer.js";
import { loadModelFromArgs, type ModelArgs, withModelOptions } from "../model-options.js";
import { printJson } from "../output.js";

interface Args extends ModelArgs {
  prompt?: string[];
  prompts?: string;
  "prompt-ids"?: string[];
  tokenizer?: string;
  chat?: boolean;
  system?: string;
  think?: boolean;
  "max-new-tokens": number;
  temperature: number;
  "top-p": number;
  "top-k": number;
  seed?: number;
  stop?: string[];
  "ignore-eos"?: boolean;
  "batch-size": number;
  json?: boolean;
}

function parseIds(s: string): number[] {
  const ids = s.split(",").map((x) => Number(x.trim()));
  if (ids.length === 0 || ids.some((x) => !Number.isInteger(x) || x < 0)) {
    throw new InputError(`--prompt-ids: expected comma-separated token ids such as 1,2,3, got '${s}'`);
  }
  return ids;
}

export const generateCommand: CommandModule<object, Args> = {
  command: "generate <model>",
  describe: "Generate text from a model folder at a precision, streaming tokens to stdout",
  builder: (y) =>
    withModelOptions(y)
      .option("prompt", { type: "string", array: true, description: "Prompt text (repeat for a batch)" })
      .option("prompts", { type: "string", description: "Prompt file: .txt (one per line) or .jsonl (prompt/text field)" })
      .option("prompt-ids", { type: "string", array: true, description: "A prompt as token ids, e.g. 1,2,3 (models without a tokenizer)" })
      .option("tokenizer", { type: "string", description: "Folder with tokenizer.json (default: the model folder)" })
      .option("chat", { type: "boolean", description: "Wrap the prompt in the tokenizer's chat template" })
      .option("system", { type: "string", description: "--chat: a system message" })
      .option("think", { type: "boolean", description: "--chat: set the template's enable_thinking (Qwen3)" })
      .option("max-new-tokens", { type: "number", default: 128, description: "Tokens to generate at most" })
      .option("temperature", { type: "number", default: 0, description: "0 = greedy" })
      .option("top-p", { type: "number", default: 1, description: "Nucleus sampling mass" })
      .option("top-k", { type: "number", default: 0, description: "Keep the k most likely tokens (0 = off)" })
      .option("seed", { type: "number", description: "Sampling seed (default: random)" })
      .option("stop", { type: "string", array: true, description: "Stop strings (the completion is cut before them)" })
      .option("ignore-eos", { type: "boolean", description: "Keep generating through EOS" })
      .option("batch-size", { type: "number", default: 8, description: "Prompts per batch" })
      .option("json", { type: "boolean", description: "Print the results as JSON instead of streaming" })
      .check((a) => {
        const n = (a.prompt ? 1 : 0) + (a.prompts ? 1 : 0) + (a["prompt-ids"] ? 1 : 0);
        if (n !== 1) throw new Error("Give exactly one of --prompt, --prompts or --prompt-ids");
        return true;
      })
      .strict(),
  handler: async (args) => {
    const opts: GenerateOptions = {
      maxNewTokens: args["max-new-tokens"],
      temperature: args.temperature,
      topP: args["top-p"],
      topK: args["top-k"],
      seed: args.seed,
      stop: args.stop,
      chat: args.chat,
      system: args.system,
      chatTemplateVariables: args.think === undefined ? undefined : { enable_thinking: args.think },
      ignoreEos: args["ignore-eos"],
      batchSize: args["batch-size"],
    };
    const idPrompts = args["prompt-ids"]?.map(parseIds);
    const prompts = args.prompt ?? (args.prompts ? await readPrompts(args.prompts) : undefined);
    // Load the tokenizer first: it is cheap, and a missing one should fail before the weights load.
    const tokDir = args.tokenizer ?? args.model;
    const tok = prompts || Tokenizer.existsIn(tokDir) ? await Tokenizer.fromModelDir(tokDir) : undefined;
    const model = await loadModelFromArgs(args);
    try {
      const n = prompts?.length ?? idPrompts?.length ?? 0;
      const streaming = !args.json && n === 1 && tok !== undefined;
      if (streaming) opts.onToken = (_i, text) => process.stdout.write(text);
      const t0 = performance.now();
      if (idPrompts) {
        const r = await generateIds(model, idPrompts, { ...opts, tokenizer: tok });
        const s = (performance.now() - t0) / 1000;
        if (args.json) printJson(r.map((x) => ({ ...x, completion: tok?.decode(x.tokens) })));
        else if (!streaming) for (const x of r) process.stdout.write(`${x.tokens.join(",")}\n`);
        else process.stdout.write("\n");
        summary(r, s);
        return;
      }
      const r = await generate(model, tok as Tokenizer, prompts as string[], opts);
      const s = (performance.now() - t0) / 1000;
      if (args.json) printJson(r);
      else if (streaming) process.stdout.write("\n");
      else r.forEach((x, i) => process.stdout.write(`${i > 0 ? "\n" : ""}=== ${i}: ${x.prompt}\n${x.completion}\n`));
      summary(r, s);
    } finally {
      model.dispose();
    }
  },
};

function summary(r: { tokens: number[]; finishReason: string }[], seconds: number): void {
  const tokens = r.reduce((a, x) => a + x.tokens.length, 0);
  const reasons = [...new Set(r.map((x) => x.finishReason))].join(", ");
  process.stderr.write(`[${tokens} tokens in ${seconds.toFixed(2)} s, ${(tokens / seconds).toFixed(1)} tokens/s; finish: ${reasons}]\n`);
}
