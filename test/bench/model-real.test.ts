// The benchmarks on a real model (../shared/models/tiny-gpt2, random weights with GPT-2's tokenizer):
// MMLU letter log-probabilities against the independent reference logits (left padding included), and
// the CLI end to end for the three tasks and compare.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import "./python.js";
import { describe, expect, it } from "vitest";

import { modelChoiceScorer } from "../../src/bench/model.js";
import { loadSafetensors } from "../../src/io/safetensors.js";
import { Model } from "../../src/model/model.js";
import type { Tokenizer } from "../../src/model/tokenizer.js";
import { runCli } from "../helpers/cli.js";
import { haveShared, sharedPath } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("qsae-bench-model-");
const GPT2 = sharedPath("models/tiny-gpt2");

describe.skipIf(!haveShared)("bench on tiny-gpt2", () => {
  it("MMLU letter log-probs equal log-softmax of the reference logits, with left padding", async () => {
    const ref = await loadSafetensors(sharedPath("reference/tiny-gpt2.fp32.safetensors"), ["input_ids", "logits"]);
    const [B, T] = ref.tensors.input_ids.shape;
    const ids = [...(ref.tensors.input_ids.toTypedArray() as BigInt64Array)].map(Number);
    const logits = ref.tensors.logits.toFloat64Array();
    const V = ref.tensors.logits.shape[2];
    // GPT-2 ids of " A", " B", " C", " D"
    const letters = [317, 347, 327, 360];
    // prompt b = the first T - b tokens of row b (different lengths: the batch is left-padded)
    const prompts = Array.from({ length: B }, (_, b) => `row${b}`);
    const tok = {
      encode: (s: string) => {
        const m = /^row(\d+)$/.exec(s);
        if (m) return ids.slice(Number(m[1]) * T, Number(m[1]) * T + T - Number(m[1]));
        return [letters["ABCD".indexOf(s.trim())]];
      },
    } as unknown as Tokenizer;
    const model = await Model.load(GPT2, { precision: "fp32" });
    try {
      const lp = await modelChoiceScorer(model, tok).score(prompts);
      for (let b = 0; b < B; b++) {
        const t = T - b - 1;
        const row = logits.subarray((b * T + t) * V, (b * T + t + 1) * V);
        let max = -Infinity;
        for (const x of row) max = Math.max(max, x);
        let s = 0;
        for (const x of row) s += Math.exp(x - max);
        const lse = max + Math.log(s);
        letters.forEach((id, c) => expect(lp[b][c]).toBeCloseTo(row[id] - lse, 4));
      }
    } finally {
      model.dispose();
    }
  });

  it("CLI: humaneval, gsm8k and mmlu run the model; compare reads two precisions", () => {
    const he = runCli(["bench", "humaneval", "--model", GPT2, "--precision", "fp32", "--limit", "3", "--max-new-tokens", "8", "--batch-size", "2", "--json", "--out", join(dir, "he")]);
    expect(he.stderr).toBe("");
    const j = JSON.parse(he.stdout);
    expect(j).toMatchObject({ task: "humaneval", metric: "pass@1", n: 3 });
    expect(j.ci95.length).toBe(2);
    const rows = readFileSync(join(dir, "he", "samples.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(rows.map((r) => r.task_id)).toEqual(["QsaeEval/0", "QsaeEval/1", "QsaeEval/2"]);
    for (const r of rows) expect(typeof r.result).toBe("string");
    const res = JSON.parse(readFileSync(join(dir, "he", "result.json"), "utf8"));
    expect(res.meta).toMatchObject({ precision: "fp32", device: "cpu" });
    expect(res.items[0].finishReason).toMatch(/^(stop|eos|length)$/);

    const g = runCli(["bench", "gsm8k", "--model", GPT2, "--limit", "2", "--shots", "1", "--max-new-tokens", "6", "--json"]);
    expect(g.stderr).toBe("");
    expect(JSON.parse(g.stdout)).toMatchObject({ task: "gsm8k", metric: "accuracy", n: 2 });

    for (const p of ["fp32", "nf4"]) {
      const m = runCli(["bench", "mmlu", "--model", GPT2, "--precision", p, "--subjects", "python_programming", "--limit", "6", "--out", join(dir, `mmlu-${p}`)]);
      expect(m.stderr).toBe("");
      expect(m.stdout).toMatch(/^mmlu {2}accuracy = [01]\.\d{4} {2}\(\d\/6\)/);
    }
    const c = runCli(["bench", "compare", join(dir, "mmlu-fp32"), join(dir, "mmlu-nf4"), "--json"]);
    expect(c.stderr).toBe("");
    const cj = JSON.parse(c.stdout);
    expect(cj.n).toBe(6);
    expect(cj.bothPassed + cj.bothFailed + cj.passToFail.length + cj.failToPass.length).toBe(6);
    expect(cj.pValue).toBeGreaterThan(0);
  });
});
