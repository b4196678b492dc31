// Tokenizer of a Hugging Face model folder: tokenizer.json through @huggingface/tokenizers, special
// tokens and the chat template from tokenizer_config.json (rendered with @huggingface/jinja), EOS ids
// from generation_config.json. Nothing here is hand-written BPE: the maintained libraries do the work.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { Template } from "@huggingface/jinja";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";

import { InputError } from "../errors.js";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface EncodeOptions {
  /** Add the model's special tokens (BOS etc.) as the tokenizer's post-processor and add_bos_token say. Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, <|im_start|>, ...) from the text. Default false. */
  skipSpecialTokens?: boolean;
}

export interface ChatTemplateOptions {
  /** Append the assistant turn's opening (e.g. `<|im_start|>assistant\n`). Default true. */
  addGenerationPrompt?: boolean;
  /** Extra variables for the template (e.g. `{ enable_thinking: false }` for Qwen3, `tools`). */
  variables?: Record<string, unknown>;
}

/** The JSON files a tokenizer is built from (tokenizer.json is required, the others optional). */
export interface TokenizerFiles {
  tokenizer: Record<string, unknown>;
  config?: Record<string, unknown>;
  generationConfig?: Record<string, unknown>;
  /** A chat template given separately (chat_template.jinja); overrides the config's. */
  chatTemplate?: string;
  /** Where the files came from, for error messages. */
  source?: string;
}

type TokenSpec = string | { content?: string } | null | undefined;

function tokenContent(t: TokenSpec): string | null {
  if (t == null) return null;
  if (typeof t === "string") return t;
  return typeof t.content === "string" ? t.content : null;
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`${path}: ${code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("expected a JSON object");
    return v as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`${path}: invalid JSON (${(e as Error).message})`);
  }
}

export class Tokenizer {
  readonly #tok: HfTokenizer;
  readonly #template: Template | null;
  readonly #config: Record<string, unknown>;
  readonly #specialIds: Set<number>;
  readonly #addBos: boolean;
  readonly #addEos: boolean;
  /** Where the tokenizer was loaded from. */
  readonly source: string;
  readonly bosTokenId: number | null;
  /** EOS ids: tokenizer_config's eos_token plus generation_config's eos_token_id (one id or a list). */
  readonly eosTokenIds: number[];
  readonly padTokenId: number | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  /** The chat template's source text, when the model has one. */
  readonly chatTemplate: string | null;

  private constructor(files: TokenizerFiles) {
    this.source = files.source ?? "tokenizer.json";
    const config = files.config ?? {};
    this.#config = config;
    try {
      this.#tok = new HfTokenizer(files.tokenizer, config);
    } catch (e) {
      throw new InputError(`${this.source}: cannot build the tokenizer (${(e as Error).message})`);
    }
    const idOf = (t: TokenSpec, what: string): number | null => {
      const s = tokenContent(t);
      if (s == null) return null;
      const id = this.#tok.token_to_id(s);
      if (id === undefined) throw new InputError(`${this.source}: ${what} ${JSON.stringify(s)} is not in the vocabulary`);
      return id;
    };
    this.bosToken = tokenContent(config.bos_token as TokenSpec);
    this.eosToken = tokenContent(config.eos_token as TokenSpec);
    this.padToken = tokenContent(config.pad_token as TokenSpec);
    this.bosTokenId = idOf(config.bos_token as TokenSpec, "bos_token");
    this.padTokenId = idOf(config.pad_token as TokenSpec, "pad_token");
    const eos = new Set<number>();
    const e = idOf(config.eos_token as TokenSpec, "eos_token");
    if (e !== null) eos.add(e);
    const g = files.generationConfig?.eos_token_id;
    for (const id of Array.isArray(g) ? g : g == null ? [] : [g]) {
      if (typeof id !== "number" || !Number.isInteger(id)) {
        throw new InputError(`${this.source}: generation_config.json eos_token_id must be an integer or a list of integers`);
      }
      eos.add(id);
    }
    this.eosTokenIds = [...eos];
    this.#addBos = config.add_bos_token === true && this.bosTokenId !== null;
    this.#addEos = config.add_eos_token === true && e !== null;
    this.#specialIds = new Set<number>();
    for (const [id, t] of this.#tok.get_added_tokens_decoder()) if (t.special) this.#specialIds.add(id);

    let tpl: string | null = files.chatTemplate ?? null;
    if (tpl === null) {
      const ct = config.chat_template;
      if (typeof ct === "string") tpl = ct;
      else if (Array.isArray(ct)) {
        // A list of named templates: the "default" one serves plain chats, as in transformers.
        const named = ct as { name?: string; template?: string }[];
        tpl = named.find((t) => t.name === "default")?.template ?? null;
      }
    }
    this.chatTemplate = tpl;
    try {
      this.#template = tpl === null ? null : new Template(tpl);
    } catch (e) {
      throw new InputError(`${this.source}: cannot parse chat_template (${(e as Error).message})`);
    }
  }

  /**
   * Loads `tokenizer.json`, `tokenizer_config.json`, `generation_config.json` and `chat_template.jinja`
   * from a model folder (only tokenizer.json is required).
   */
  static async fromModelDir(dir: string): Promise<Tokenizer> {
    const tj = join(dir, "tokenizer.json");
    if (!existsSync(tj)) throw new InputError(`${tj}: no such file (the model folder has no tokenizer)`);
    const opt = async (name: string) => (existsSync(join(dir, name)) ? readJson(join(dir, name)) : undefined);
    const jinja = join(dir, "chat_template.jinja");
    return new Tokenizer({
      tokenizer: await readJson(tj),
      config: await opt("tokenizer_config.json"),
      generationConfig: await opt("generation_config.json"),
      chatTemplate: existsSync(jinja) ? await readFile(jinja, "utf8") : undefined,
      source: dir,
    });
  }

  /** Builds a tokenizer from already-parsed files. */
  static fromFiles(files: TokenizerFiles): Tokenizer {
    return new Tokenizer(files);
  }

  /** Whether the folder has a model folder-style tokenizer.json (cheap check, no parsing). */
  static existsIn(dir: string): boolean {
    return existsSync(join(dir, "tokenizer.json"));
  }

  get hasChatTemplate(): boolean {
    return this.#template !== null;
  }

  /** Vocabulary size including added tokens. */
  get vocabSize(): number {
    return this.#tok.get_vocab(true).size;
  }

  /** The id of a token string (e.g. "<|im_end|>"), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.#tok.id_to_token(id);
  }

  isSpecial(id: number): boolean {
    return this.#specialIds.has(id);
  }

  encode(text: string, o: EncodeOptions = {}): number[] {
    const add = o.addSpecialTokens ?? true;
    const ids = this.#tok.encode(text, { add_special_tokens: add }).ids;
    if (add && this.#addBos && ids[0] !== this.bosTokenId) ids.unshift(this.bosTokenId as number);
    if (add && this.#addEos) {
      const e = this.#tok.token_to_id(this.eosToken as string) as number;
      if (ids[ids.length - 1] !== e) ids.push(e);
    }
    return ids;
  }

  decode(ids: readonly number[], o: DecodeOptions = {}): string {
    if (ids.length === 0) return "";
    return this.#tok.decode([...ids], { skip_special_tokens: o.skipSpecialTokens ?? false });
  }

  /**
   * Renders messages with the model's chat template, as transformers' apply_chat_template(tokenize=False)
   * does: variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `pad_token`, `unk_token`.
   * Encode the result with `addSpecialTokens: false` (the template already holds them).
   */
  applyChatTemplate(messages: ChatMessage[], o: ChatTemplateOptions = {}): string {
    if (this.#template === null) throw new InputError(`${this.source}: the tokenizer has no chat_template`);
    try {
      return this.#template.render({
        ...o.variables,
        messages,
        add_generation_prompt: o.addGenerationPrompt ?? true,
        bos_token: this.bosToken ?? "",
        eos_token: this.eosToken ?? "",
        pad_token: this.padToken ?? "",
        unk_token: tokenContent(this.#config.unk_token as TokenSpec) ?? "",
      });
    } catch (e) {
      throw new InputError(`${this.source}: chat_template failed to render (${(e as Error).message})`);
    }
  }
}
