// Byte-level BPE training: a standard tokenizer.json that the tokenizer library loads and that
// round-trips any text, with merges that really compress the corpus.
import { Tokenizer } from "@huggingface/tokenizers";
import { describe, expect, it } from "vitest";

import { bpeTokenizerJson, bytesToUnicode, trainBpe } from "../../src/train/bpe.js";

const corpus = [
  "def add(a, b):\n    return a + b\n",
  "def sub(a, b):\n    return a - b\n",
  "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
  "for i in range(10):\n    print(i)\n",
].flatMap((s) => Array.from({ length: 5 }, () => s));

describe("trainBpe", () => {
  it("maps all 256 bytes to distinct printable characters", () => {
    const m = bytesToUnicode();
    expect(new Set(m).size).toBe(256);
    expect(m[32]).toBe("Ġ");
    expect(m[10]).toBe("Ċ");
    expect(m[65]).toBe("A");
  });

  it("learns frequent merges first, deterministically, up to the vocabulary size", () => {
    const a = trainBpe(corpus, { vocabSize: 300, specialTokens: ["<|endoftext|>"] });
    const b = trainBpe(corpus, { vocabSize: 300, specialTokens: ["<|endoftext|>"] });
    expect(a.merges).toEqual(b.merges);
    expect(a.vocab.size).toBeLessThanOrEqual(300);
    expect(a.vocab.size).toBeGreaterThan(256 + 10);
    expect(a.vocab.get("<|endoftext|>")).toBe(a.vocab.size - 1);
    // Indentation (four spaces) is the most frequent pair run in this corpus.
    expect(a.merges[0]).toEqual(["Ġ", "Ġ"]);
  });

  it("produces a tokenizer.json the tokenizer library loads, round-trips text and compresses it", () => {
    const m = trainBpe(corpus, { vocabSize: 320, specialTokens: ["<|endoftext|>"] });
    const tok = new Tokenizer(bpeTokenizerJson(m), { eos_token: "<|endoftext|>" });
    for (const s of ["def add(a, b):\n    return a + b\n", "naïve → ünïcödé 你好 🙂", "\t\ttabs  and   spaces\n\n"]) {
      const enc = tok.encode(s, { add_special_tokens: false });
      expect(tok.decode(enc.ids)).toBe(s);
    }
    const text = corpus[0];
    const n = tok.encode(text, { add_special_tokens: false }).ids.length;
    expect(n).toBeLessThan(Buffer.byteLength(text) / 2);
    expect(tok.encode("<|endoftext|>", { add_special_tokens: false }).ids).toEqual([m.vocab.get("<|endoftext|>")]);
  });
});
