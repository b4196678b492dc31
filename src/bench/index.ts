// Capability benchmarks: HumanEval (execution-based pass@k), GSM8K (8-shot CoT, exact numeric match),
// MMLU (5-shot, next-token log-probabilities of the answer letters), scoring of given samples without
// a model, and per-item comparison of two results (flips, McNemar's exact test).
export type {
  BenchItem,
  BenchMeta,
  BenchProgress,
  BenchResult,
  BenchTask,
  ChoiceScorer,
  Completion,
  CompletionFn,
  GenerateRequest,
} from "./types.js";
export {
  HUMANEVAL_STOP,
  extractCodeBlock,
  humanEvalProgram,
  humanEvalSamplesJsonl,
  loadHumanEval,
  runHumanEval,
  truncateAtStop,
} from "./humaneval.js";
export type { HumanEvalOptions, HumanEvalProblem, HumanEvalSample } from "./humaneval.js";
export { extractGsm8kAnswer, gsm8kPrompt, loadGsm8k, runGsm8k } from "./gsm8k.js";
export type { Gsm8kItem, Gsm8kOptions } from "./gsm8k.js";
export { MMLU_GROUPS, fitMmluPrompt, loadMmluCsv, mmluPrompt, mmluSubjects, runMmlu, selectSubjects } from "./mmlu.js";
export type { MmluOptions, MmluQuestion } from "./mmlu.js";
export { compareResults, loadResult, sideBySide } from "./compare.js";
export type { CompareResult, Flip } from "./compare.js";
export { PythonExecutor, resolvePython } from "./execute.js";
export type { ExecResult, ExecutorOptions } from "./execute.js";
export { bootstrapInterval, mcnemarExact, passAtK, wilsonInterval } from "./stats.js";
