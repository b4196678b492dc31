// train-lm: builds a small Llama-style code LM from a corpus, with qsae's own BPE tokenizer and the
// addon's autograd trainer. This is how the bundled default model is made (scripts/train-default-model).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";

import { InputError } from "../errors.js";
import { native } from "../native/addon.js";
import { runJob, type JobOptions } from "../native/cancel.js";
import type { LmTrainResult } from "../native/types.js";
import { nativeTensor, Tensor } from "../tensor.js";
import { VERSION } from "../version.js";
import { bpeTokenizerJson, trainBpe } from "./bpe.js";
import { collectCorpus, readCorpusText, type CorpusFile } from "./corpus.js";

export const EOS_TOKEN = "<|endoftext|>";

export interface LmArchitecture {
  vocabSize: number;
  hiddenSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediateSize: number;
  maxPositions: number;
  ropeTheta: number;
}

export interface TrainLmOptions extends JobOptions {
  corpus: string[];
  out: string;
  extensions?: string[];
  exclude?: string[];
  heldOutFraction?: number;
  /** bytes of training text used to learn the BPE merges */
  tokenizerBytes?: number;
  arch: LmArchitecture;
  seqLen: number;
  batchSize: number;
  steps: number;
  warmupSteps: number;
  lr: number;
  weightDecay: number;
  seed: number;
  maxSeconds?: number;
  saveDtype?: "bf16" | "fp32" | "fp16";
  /** where the training steps run: "cpu" (default), "cuda", "cuda:1", ... */
  device?: string;
  evalWindows?: number;
  /** the command line that produced the model, recorded in train_report.json */
  command?: string;
  log?: (line: string) => void;
}

export interface TrainLmReport {
  qsae_version: string;
  command: string;
  corpus: { roots: string[]; extensions: string[]; exclude: string[]; heldout_fraction: number; train_files: number; heldout_files: number; train_bytes: number; heldout_bytes: number; sha256: string };
  tokenizer: { vocab_size: number; merges: number; bytes_per_token_heldout: number };
  train_tokens: number;
  heldout_tokens: number;
  arch: LmArchitecture;
  parameters: number;
  schedule: { seq_len: number; batch_size: number; steps: number; warmup_steps: number; lr: number; weight_decay: number; seed: number; device: string };
  result: LmTrainResult;
  heldout_loss_nats: number;
  heldout_bits_per_byte: number;
  unigram_bits_per_byte: number;
  eval: { seq_len: number; windows: number };
  seconds_total: number;
}

function llamaConfig(a: LmArchitecture, eosId: number, dtype: string): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: a.vocabSize,
    hidden_size: a.hiddenSize,
    intermediate_size: a.intermediateSize,
    num_hidden_layers: a.layers,
    num_attention_heads: a.heads,
    num_key_value_heads: a.kvHeads,
    head_dim: a.hiddenSize / a.heads,
    max_position_embeddings: a.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: a.ropeTheta,
    hidden_act: "silu",
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: true,
    bos_token_id: eosId,
    eos_token_id: eosId,
    pad_token_id: eosId,
    torch_dtype: dtype === "bf16" ? "bfloat16" : dtype === "fp16" ? "float16" : "float32",
  };
}

export function parameterCount(a: LmArchitecture): number {
  const head = a.hiddenSize / a.heads;
  const attn = a.hiddenSize * (a.heads * head) * 2 + a.hiddenSize * (a.kvHeads * head) * 2;
  const mlp = 3 * a.hiddenSize * a.intermediateSize;
  return a.vocabSize * a.hiddenSize + a.layers * (attn + mlp + 2 * a.hiddenSize) + a.hiddenSize;
}

/** Token ids of each document, joined by EOS, as one int64 stream. */
function tokenStream(tok: HfTokenizer, texts: string[], eos: number): BigInt64Array {
  const parts: number[][] = [];
  let total = 0;
  for (const t of texts) {
    const ids = tok.encode(t, { add_special_tokens: false }).ids;
    parts.push(ids);
    total += ids.length + 1;
  }
  const out = new BigInt64Array(total);
  let o = 0;
  for (const ids of parts) {
    for (const id of ids) out[o++] = BigInt(id);
    out[o++] = BigInt(eos);
  }
  return out;
}

/** Bits per byte of a unigram model estimated on `train` (add-one smoothing) evaluated on `heldout`. */
export function unigramBitsPerByte(train: BigInt64Array, heldout: BigInt64Array, vocab: number, heldoutBytes: number): number {
  const counts = new Float64Array(vocab).fill(1);
  for (const id of train) counts[Number(id)]++;
  const total = counts.reduce((a, b) => a + b, 0);
  let bits = 0;
  for (const id of heldout) bits -= Math.log2(counts[Number(id)] / total);
  return bits / heldoutBytes;
}

export async function trainLm(o: TrainLmOptions): Promise<TrainLmReport> {
  const log = o.log ?? (() => {});
  const t0 = Date.now();
  for (const r of o.corpus) if (!existsSync(r)) throw new InputError(`${r}: corpus folder does not exist`);
  const out = resolve(o.out);
  if (!existsSync(dirname(out))) throw new InputError(`${dirname(out)}: output's parent folder does not exist`);
  const corpus = collectCorpus({
    roots: o.corpus,
    extensions: o.extensions,
    exclude: o.exclude,
    heldOutFraction: o.heldOutFraction,
  });
  if (corpus.train.length === 0 || corpus.heldOut.length === 0) {
    throw new InputError(`${o.corpus.join(", ")}: corpus needs files in both splits (found ${corpus.train.length} train, ${corpus.heldOut.length} held-out)`);
  }
  const trainText = readCorpusText(corpus.train);
  const heldText = readCorpusText(corpus.heldOut);
  const bytesOf = (fs: CorpusFile[]) => fs.reduce((a, f) => a + f.bytes, 0);
  const hash = createHash("sha256");
  for (const f of [...corpus.train, ...corpus.heldOut]) hash.update(f.name).update(readFileSync(f.path));
  log(`corpus: ${corpus.train.length} train files (${bytesOf(corpus.train)} bytes), ${corpus.heldOut.length} held-out files (${bytesOf(corpus.heldOut)} bytes)`);

  // Tokenizer: BPE merges learned on a prefix of the (deterministically ordered) training files.
  const budget = o.tokenizerBytes ?? 4_000_000;
  const sample: string[] = [];
  let used = 0;
  for (const t of trainText) {
    if (used >= budget) break;
    sample.push(t);
    used += t.length;
  }
  const bpe = trainBpe(sample, { vocabSize: o.arch.vocabSize, specialTokens: [EOS_TOKEN] });
  const vocabSize = bpe.vocab.size;
  const eosId = bpe.vocab.get(EOS_TOKEN)!;
  const arch = { ...o.arch, vocabSize };
  const tokJson = bpeTokenizerJson(bpe);
  const tokConfig = {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: EOS_TOKEN,
    eos_token: EOS_TOKEN,
    pad_token: EOS_TOKEN,
    unk_token: null,
    add_bos_token: false,
    add_eos_token: false,
    model_max_length: arch.maxPositions,
    clean_up_tokenization_spaces: false,
  };
  const tok = new HfTokenizer(tokJson, tokConfig);
  log(`tokenizer: ${vocabSize} tokens, ${bpe.merges.length} merges`);
  const trainIds = tokenStream(tok, trainText, eosId);
  const heldIds = tokenStream(tok, heldText, eosId);
  log(`tokens: ${trainIds.length} train, ${heldIds.length} held-out`);

  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const dtype = o.saveDtype ?? "bf16";
    const device = o.device ?? "cpu";
    writeFileSync(join(tmp, "config.json"), `${JSON.stringify(llamaConfig(arch, eosId, dtype), null, 2)}\n`);
    writeFileSync(join(tmp, "generation_config.json"), `${JSON.stringify({ bos_token_id: eosId, eos_token_id: eosId, pad_token_id: eosId, do_sample: false }, null, 2)}\n`);
    writeFileSync(join(tmp, "tokenizer.json"), JSON.stringify(tokJson));
    writeFileSync(join(tmp, "tokenizer_config.json"), `${JSON.stringify(tokConfig, null, 2)}\n`);
    await native().lmInitWeights(tmp, o.seed);
    const trainT = Tensor.from(trainIds);
    const heldT = Tensor.from(heldIds);
    const evalWindows = o.evalWindows ?? 64;
    const result = await runJob(o, (n) =>
      native().lmTrain(tmp, nativeTensor(trainT), nativeTensor(heldT), {
        ...n,
        seqLen: o.seqLen,
        batchSize: o.batchSize,
        steps: o.steps,
        warmupSteps: o.warmupSteps,
        lr: o.lr,
        weightDecay: o.weightDecay,
        seed: o.seed,
        maxSeconds: o.maxSeconds,
        saveDtype: dtype,
        device,
        evalWindows,
        evalEvery: Math.max(50, Math.floor(o.steps / 10)),
      }),
    );
    // The held-out loss of the saved (storage-dtype) weights, as the recorded number users can check.
    const saved = await native().lmEvalLoss(tmp, nativeTensor(heldT), { seqLen: o.seqLen, windows: evalWindows });
    const tokensPerByte = heldIds.length / bytesOf(corpus.heldOut);
    const report: TrainLmReport = {
      qsae_version: VERSION,
      command: o.command ?? "",
      corpus: {
        roots: o.corpus,
        extensions: o.extensions ?? [".py"],
        exclude: o.exclude ?? [],
        heldout_fraction: o.heldOutFraction ?? 0.05,
        train_files: corpus.train.length,
        heldout_files: corpus.heldOut.length,
        train_bytes: bytesOf(corpus.train),
        heldout_bytes: bytesOf(corpus.heldOut),
        sha256: hash.digest("hex"),
      },
      tokenizer: { vocab_size: vocabSize, merges: bpe.merges.length, bytes_per_token_heldout: 1 / tokensPerByte },
      train_tokens: trainIds.length,
      heldout_tokens: heldIds.length,
      arch,
      parameters: parameterCount(arch),
      schedule: { seq_len: o.seqLen, batch_size: o.batchSize, steps: o.steps, warmup_steps: o.warmupSteps, lr: o.lr, weight_decay: o.weightDecay, seed: o.seed, device },
      result,
      heldout_loss_nats: saved,
      heldout_bits_per_byte: (saved / Math.LN2) * tokensPerByte,
      unigram_bits_per_byte: unigramBitsPerByte(trainIds, heldIds, vocabSize, bytesOf(corpus.heldOut)),
      eval: { seq_len: o.seqLen, windows: evalWindows },
      seconds_total: (Date.now() - t0) / 1000,
    };
    writeFileSync(join(tmp, "train_report.json"), `${JSON.stringify(report, null, 2)}\n`);
    trainT.dispose();
    heldT.dispose();
    rmSync(out, { recursive: true, force: true });
    renameSync(tmp, out);
    return report;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Re-tokenizes the held-out split of a trained model's corpus and evaluates its loss (for checking a bundled model). */
export async function heldOutLoss(
  modelDir: string,
  opts: { corpus: string[]; extensions?: string[]; exclude?: string[]; heldOutFraction?: number; seqLen: number; windows: number; precision?: string },
): Promise<{ loss: number; tokens: number }> {
  const tokJson = JSON.parse(readFileSync(join(modelDir, "tokenizer.json"), "utf8"));
  const tokConfig = JSON.parse(readFileSync(join(modelDir, "tokenizer_config.json"), "utf8"));
  const tok = new HfTokenizer(tokJson, tokConfig);
  const eos = tok.encode(EOS_TOKEN, { add_special_tokens: false }).ids[0];
  const corpus = collectCorpus({ roots: opts.corpus, extensions: opts.extensions, exclude: opts.exclude, heldOutFraction: opts.heldOutFraction });
  const ids = tokenStream(tok, readCorpusText(corpus.heldOut), eos);
  const t = Tensor.from(ids);
  try {
    const loss = await native().lmEvalLoss(modelDir, nativeTensor(t), { seqLen: opts.seqLen, windows: opts.windows, precision: opts.precision });
    return { loss, tokens: ids.length };
  } finally {
    t.dispose();
  }
}
