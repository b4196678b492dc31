// Byte-level BPE training (the GPT-2 scheme) producing a standard tokenizer.json that tokenizer
// libraries load. Used to build qsae's bundled default model; written by hand because no maintained
// npm package trains BPE vocabularies.

/** GPT-2's reversible map from bytes to printable unicode characters. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const out = new Array<string>(256);
  for (let i = 0; i < bs.length; i++) out[bs[i]] = String.fromCodePoint(cs[i]);
  return out;
}

/** GPT-2's pre-tokenization pattern (contractions, letters, numbers, punctuation runs, whitespace). */
export const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export interface BpeTrainOptions {
  /** final vocabulary size including the 256 byte tokens and the special tokens */
  vocabSize: number;
  /** pairs seen fewer times than this are never merged */
  minFrequency?: number;
  specialTokens?: string[];
}

export interface BpeModel {
  vocab: Map<string, number>;
  merges: [string, string][];
  specialTokens: string[];
}

/** Learns merges from `texts`. Deterministic: ties between equally frequent pairs go to the smaller pair. */
export function trainBpe(texts: Iterable<string>, opts: BpeTrainOptions): BpeModel {
  const byteChars = bytesToUnicode();
  const encoder = new TextEncoder();
  const wordCounts = new Map<string, number>();
  for (const text of texts) {
    for (const m of text.matchAll(GPT2_SPLIT)) {
      const w = Array.from(encoder.encode(m[0]), (b) => byteChars[b]).join("");
      wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
    }
  }
  const specials = opts.specialTokens ?? [];
  const minFreq = opts.minFrequency ?? 2;
  const vocab = new Map<string, number>();
  for (const c of [...byteChars].sort()) vocab.set(c, vocab.size);

  // Words as symbol arrays, with counts; pair statistics kept incrementally.
  const words: string[][] = [];
  const counts: number[] = [];
  for (const [w, c] of wordCounts) {
    words.push(Array.from(w));
    counts.push(c);
  }
  const pairKey = (a: string, b: string) => `${a}\u0000${b}`;
  const pairCount = new Map<string, number>();
  const pairWhere = new Map<string, Set<number>>();
  const addPairs = (wi: number, sign: number) => {
    const s = words[wi];
    for (let i = 0; i + 1 < s.length; i++) {
      const k = pairKey(s[i], s[i + 1]);
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * counts[wi]);
      if (sign > 0) {
        let set = pairWhere.get(k);
        if (!set) pairWhere.set(k, (set = new Set()));
        set.add(wi);
      }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addPairs(wi, 1);

  const merges: [string, string][] = [];
  const target = opts.vocabSize - specials.length;
  while (vocab.size < target) {
    let best: string | undefined;
    let bestCount = 0;
    for (const [k, c] of pairCount) {
      if (c > bestCount || (c === bestCount && best !== undefined && k < best)) {
        best = k;
        bestCount = c;
      }
    }
    if (best === undefined || bestCount < minFreq) break;
    const [a, b] = best.split("\u0000");
    const merged = a + b;
    merges.push([a, b]);
    if (!vocab.has(merged)) vocab.set(merged, vocab.size);
    const affected = [...(pairWhere.get(best) ?? [])];
    for (const wi of affected) {
      addPairs(wi, -1);
      const s = words[wi];
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(merged);
          i++;
        } else {
          out.push(s[i]);
        }
      }
      words[wi] = out;
      addPairs(wi, 1);
    }
    pairCount.delete(best);
    pairWhere.delete(best);
    for (const [k, c] of pairCount) if (c <= 0) pairCount.delete(k);
  }
  for (const s of specials) vocab.set(s, vocab.size);
  return { vocab, merges, specialTokens: specials };
}

/** The tokenizer.json document (HF `tokenizers` format) for a trained byte-level BPE. */
export function bpeTokenizerJson(model: BpeModel): Record<string, unknown> {
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: model.specialTokens.map((content) => ({
      id: model.vocab.get(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(model.vocab),
      merges: model.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}
