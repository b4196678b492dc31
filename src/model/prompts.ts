// Prompt files for generation and activation extraction: `.txt` (one prompt per line) or `.jsonl`
// (one JSON object per line with a string `prompt` or `text` field, or, for models without a tokenizer,
// an `input_ids` list). Errors name the file and line.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { extname } from "node:path";

import { InputError } from "../errors.js";

/**
 * Reads prompts from a `.txt` or `.jsonl` file. Empty lines are skipped (so a trailing newline or blank
 * separators add no prompts); `\r\n` line ends are accepted. In `.txt` files, lines are kept verbatim.
 */
export async function readPrompts(file: string): Promise<string[]> {
  const items = await readPromptItems(file);
  if (typeof items[0] !== "string") throw new InputError(`${file}: holds input_ids, but text prompts are needed here`);
  return items as string[];
}

/** Like readPrompts, but `.jsonl` lines may instead all carry `input_ids` (token ids). */
export async function readPromptItems(file: string): Promise<string[] | number[][]> {
  const ext = extname(file).toLowerCase();
  if (ext !== ".txt" && ext !== ".jsonl") {
    throw new InputError(`${file}: unknown prompt file type '${ext || "(none)"}' (use .txt, one prompt per line, or .jsonl)`);
  }
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`${file}: ${code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  return parsePrompts(text, ext === ".jsonl" ? "jsonl" : "txt", file);
}

/** Parses prompt-file text (see readPromptItems); `source` names the file in errors. */
export function parsePrompts(text: string, kind: "txt" | "jsonl", source = "prompts"): string[] | number[][] {
  const lines = text.split("\n");
  const out: (string | number[])[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i];
    if (line.trim() === "") continue;
    if (kind === "txt") {
      out.push(line);
      continue;
    }
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new InputError(`${source}:${i + 1}: invalid JSON (${(e as Error).message})`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new InputError(`${source}:${i + 1}: expected a JSON object with a "prompt" or "text" field`);
    }
    const o = v as Record<string, unknown>;
    const p = o.prompt ?? o.text;
    if (p === undefined && o.input_ids !== undefined) {
      const ids = o.input_ids;
      if (!Array.isArray(ids) || ids.length === 0 || ids.some((x) => !Number.isInteger(x) || (x as number) < 0)) {
        throw new InputError(`${source}:${i + 1}: "input_ids" must be a non-empty list of token ids`);
      }
      if (out.length > 0 && typeof out[0] === "string") throw new InputError(`${source}:${i + 1}: mixes input_ids with text prompts`);
      out.push(ids as number[]);
      continue;
    }
    if (out.length > 0 && typeof out[0] !== "string") throw new InputError(`${source}:${i + 1}: mixes text prompts with input_ids`);
    if (typeof p !== "string") {
      throw new InputError(
        `${source}:${i + 1}: ${p === undefined ? 'no "prompt", "text" or "input_ids" field' : `"${o.prompt !== undefined ? "prompt" : "text"}" is not a string`}`,
      );
    }
    out.push(p);
  }
  if (out.length === 0) throw new InputError(`${source}: no prompts`);
  return out as string[] | number[][];
}

/**
 * sha256 (hex) of a prompt set: of the JSON array of the prompts (strings, or token-id arrays), so that the
 * same prompts in the same order give the same hash whatever file they came from.
 */
export function hashPrompts(prompts: readonly (string | readonly number[])[]): string {
  return createHash("sha256").update(JSON.stringify(prompts)).digest("hex");
}
