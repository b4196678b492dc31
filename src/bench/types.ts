// Shared types of the capability benchmarks (HumanEval, GSM8K, MMLU).

export type BenchTask = "humaneval" | "gsm8k" | "mmlu";

/** One scored item (a HumanEval sample, a GSM8K question, an MMLU question). */
export interface BenchItem {
  /** "HumanEval/8"; GSM8K: the 0-based line index as a string; MMLU: "subject/index". */
  id: string;
  passed: boolean;
  /** "passed", "failed: AssertionError", "timed out"; GSM8K: "correct" / "wrong: got 12, expected 14"... */
  result: string;
  completion?: string;
  /** HumanEval with several samples per task: 0-based sample number. */
  sample?: number;
  /** GSM8K: the extracted and the reference answer; MMLU: the chosen and the reference letter. */
  answer?: string | null;
  reference?: string;
  /** MMLU: the log-probabilities of " A", " B", " C", " D" (model runs only). */
  logprobs?: number[];
  /** Generation: why it stopped ("stop", "eos", "length"). */
  finishReason?: string;
}

export interface BenchMeta {
  qsaeVersion: string;
  date: string;
  data: string;
  /** Scored from a file of completions/answers instead of a model. */
  samplesFile?: string;
  model?: string;
  precision?: string;
  computeDtype?: string;
  device?: string;
  settings: Record<string, unknown>;
  /** Wall-clock seconds of the whole run and items scored per second. */
  seconds: number;
  itemsPerSecond: number;
}

export interface BenchResult {
  task: BenchTask;
  /** "pass@1" (HumanEval) or "accuracy". */
  metric: string;
  score: number;
  /** Tasks (HumanEval) or questions scored. */
  n: number;
  /** 95% interval: Wilson score for one sample per item, percentile bootstrap over tasks otherwise. */
  ci95: [number, number];
  ciMethod: "wilson" | "bootstrap";
  /** HumanEval: pass@k for every k <= samples per task among 1, 10, 100. */
  passAtK?: Record<string, number>;
  /** MMLU: per-subject accuracy. */
  subjects?: Record<string, { n: number; correct: number; accuracy: number }>;
  meta: BenchMeta;
  items: BenchItem[];
}

/** What a benchmark asks of a text generator (a base model, or a chat model with `chat`). */
export interface GenerateRequest {
  maxNewTokens: number;
  temperature: number;
  topP?: number;
  seed?: number;
  stop: string[];
  chat?: boolean;
  signal?: AbortSignal;
}

export interface Completion {
  completion: string;
  finishReason?: string;
}

/**
 * Completes a batch of prompts (one completion each, in order). A model-backed one also tells the
 * context length and counts tokens, so few-shot prompts can drop shots that would overflow.
 */
export type CompletionFn = ((prompts: string[], req: GenerateRequest) => Promise<Completion[]>) & {
  maxPositions?: number;
  countTokens?: (text: string, chat?: boolean) => number;
};

/** Log-probabilities of the next-token continuations " A", " B", " C", " D" after each prompt. */
export interface ChoiceScorer {
  /** Number of tokens of a prompt (to drop shots that would overflow the context). */
  countTokens(text: string): number;
  /** Context length of the model. */
  maxPositions: number;
  score(prompts: string[], signal?: AbortSignal): Promise<number[][]>;
}

export interface BenchProgress {
  phase: "generate" | "execute" | "score";
  done: number;
  total: number;
}

/** A model and its tokenizer (src/model): the benchmarks build their generator / scorer from them. */
export interface ModelSource {
  model?: import("../model/generate.js").LanguageModel;
  tokenizer?: import("../model/tokenizer.js").Tokenizer;
}

export interface CommonOptions extends ModelSource {
  /** Data file or folder. */
  data: string;
  /** Only the first N items (MMLU: the first N questions of each subject). */
  limit?: number;
  /** Items per generation / scoring batch (default 8). */
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: BenchProgress) => void;
  /** Recorded in the result's meta (the CLI fills them). */
  meta?: Partial<Pick<BenchMeta, "model" | "precision" | "computeDtype" | "device">>;
}
