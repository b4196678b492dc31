// A small but complete experiment on ../shared fixtures (tiny GPT-2 with its real tokenizer, the official
// HumanEval/GSM8K/MMLU files with tiny limits), shared by the pipeline and report tests.
import { writeFileSync } from "node:fs";
import { join } from "node:path";

import type { ConfigInput } from "../../src/pipeline/config.js";
import { sharedPath } from "../helpers/shared.js";

export const SMALL_PROMPTS = [
  "def add(a, b):\n    return a + b",
  "Write a Python function to check if a number is prime",
  "Implement a binary search algorithm",
  "class Stack:\n    def __init__(self):\n        self.items = []",
  "Create a function that reverses a linked list",
  "Write a recursive fibonacci function",
  "for i in range(10):\n    print(i * i)",
  "import os\nfiles = os.listdir('.')",
  "def merge_sort(xs):\n    if len(xs) <= 1:\n        return xs",
  "Parse a CSV file and sum the second column",
  "def is_palindrome(s: str) -> bool:",
  "Count the words in a string and return a dict",
];

/** Writes the prompt file and returns a config object (paths absolute). */
export function smallConfig(dir: string, extra: Partial<ConfigInput> = {}): ConfigInput {
  const prompts = join(dir, "prompts.jsonl");
  writeFileSync(prompts, SMALL_PROMPTS.map((p) => JSON.stringify({ prompt: p })).join("\n") + "\n");
  return {
    name: "small",
    models: [{ path: sharedPath("models/tiny-gpt2"), name: "gpt2" }],
    precisions: ["bf16", "fp16", "int8", "nf4"],
    layers: [0],
    prompts,
    extraction: { max_tokens: 32, skip_bos: true, dtype: "fp32" },
    sae: { type: "relu", expansions: [0.5, 2], l1: [5e-4], epochs: 4, seeds: [0], batch_size: 64 },
    // tiny-gpt2's 50k-token vocabulary makes each forward slow on CPU: a few short prompts
    splice: { enabled: true, prompts: 6, max_tokens: 24, batch_size: 6 },
    benchmarks: {
      humaneval: { data: sharedPath("datasets/humaneval/HumanEval.jsonl.gz"), limit: 3, max_new_tokens: 12 },
      gsm8k: { data: sharedPath("datasets/gsm8k/test.jsonl"), limit: 3, shots: 1, max_new_tokens: 12 },
      mmlu: { data: sharedPath("datasets/mmlu"), subjects: ["college_computer_science"], limit: 4, shots: 1 },
    },
    ...extra,
  };
}
