// train-lm end to end on a tiny corpus (loss falls, the model loads through the normal loader), and the
// bundled default model's recorded held-out loss.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { heldOutLoss, trainLm } from "../../src/train/lm.js";
import { repoRoot } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();

function writeCorpus(root: string): void {
  mkdirSync(root, { recursive: true });
  const names = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"];
  for (let f = 0; f < 40; f++) {
    let src = `"""Module ${f}."""\n\n`;
    for (let i = 0; i < 12; i++) {
      const n = names[(f + i) % names.length];
      src += `def get_${n}_${i}(self, value):\n    """Return the ${n} of value."""\n    return self.${n} + value * ${i}\n\n`;
    }
    writeFileSync(join(root, `mod_${f}.py`), src);
  }
}

describe("trainLm", () => {
  it("trains a tiny model whose held-out loss falls far below the uniform baseline", async () => {
    const corpus = join(dir, "corpus");
    writeCorpus(corpus);
    const out = join(dir, "tiny-model");
    const report = await trainLm({
      corpus: [corpus],
      out,
      heldOutFraction: 0.2,
      arch: { vocabSize: 320, hiddenSize: 32, layers: 1, heads: 2, kvHeads: 1, intermediateSize: 64, maxPositions: 128, ropeTheta: 10000 },
      seqLen: 32,
      batchSize: 8,
      steps: 60,
      warmupSteps: 5,
      lr: 1e-2,
      weightDecay: 0.0,
      seed: 1,
      saveDtype: "fp32",
      evalWindows: 8,
    });
    expect(report.corpus.heldout_files).toBeGreaterThan(0);
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "train_report.json"]) {
      expect(existsSync(join(out, f))).toBe(true);
    }
    const uniform = Math.log(report.tokenizer.vocab_size);
    expect(report.result.heldoutCurve[0][1]).toBeLessThan(uniform + 0.5);
    expect(report.heldout_loss_nats).toBeLessThan(0.5 * uniform);
    expect(report.heldout_bits_per_byte).toBeLessThan(report.unigram_bits_per_byte);
    // The saved model reloads through the normal loader and gives the same held-out loss.
    const again = await heldOutLoss(out, { corpus: [corpus], heldOutFraction: 0.2, seqLen: 32, windows: 8 });
    expect(again.loss).toBeCloseTo(report.heldout_loss_nats, 5);
  });

  it("fits the schedule to a time limit instead of stopping mid-schedule", async () => {
    const corpus = join(dir, "corpus");
    if (!existsSync(corpus)) writeCorpus(corpus);
    const report = await trainLm({
      corpus: [corpus],
      out: join(dir, "timed-model"),
      heldOutFraction: 0.2,
      arch: { vocabSize: 300, hiddenSize: 16, layers: 1, heads: 2, kvHeads: 1, intermediateSize: 32, maxPositions: 64, ropeTheta: 10000 },
      seqLen: 16,
      batchSize: 4,
      steps: 10_000_000,
      warmupSteps: 2,
      lr: 1e-2,
      weightDecay: 0.0,
      seed: 1,
      maxSeconds: 2,
      saveDtype: "fp32",
      evalWindows: 4,
    });
    expect(report.result.scheduledSteps).toBeGreaterThan(25);
    expect(report.result.scheduledSteps).toBeLessThan(10_000_000);
    expect(report.result.steps).toBeLessThanOrEqual(report.result.scheduledSteps);
    expect(report.schedule.device).toBe("cpu");
  });

  it("rejects a missing corpus folder with one clear message", async () => {
    await expect(
      trainLm({
        corpus: [join(dir, "nope")],
        out: join(dir, "x"),
        arch: { vocabSize: 300, hiddenSize: 16, layers: 1, heads: 1, kvHeads: 1, intermediateSize: 16, maxPositions: 64, ropeTheta: 10000 },
        seqLen: 8,
        batchSize: 1,
        steps: 1,
        warmupSteps: 0,
        lr: 1e-3,
        weightDecay: 0,
        seed: 0,
      }),
    ).rejects.toThrow(/nope: corpus folder does not exist/);
    expect(existsSync(join(dir, "x"))).toBe(false);
  });
});

const bundled = join(repoRoot, "models", "qsae-tiny-code");
describe.skipIf(!existsSync(join(bundled, "train_report.json")))("bundled default model", () => {
  it("matches its recorded held-out loss on the held-out split of this machine's stdlib", async () => {
    const report = JSON.parse(readFileSync(join(bundled, "train_report.json"), "utf8"));
    const stdlib = report.corpus.roots[0] as string;
    if (!existsSync(stdlib)) return; // a machine without the same Python stdlib cannot rebuild the split
    const r = await heldOutLoss(bundled, {
      corpus: report.corpus.roots,
      extensions: report.corpus.extensions,
      exclude: report.corpus.exclude,
      heldOutFraction: report.corpus.heldout_fraction,
      seqLen: report.eval.seq_len,
      windows: report.eval.windows,
    });
    expect(r.tokens).toBe(report.heldout_tokens);
    expect(Math.abs(r.loss - report.heldout_loss_nats)).toBeLessThan(1e-3 * report.heldout_loss_nats);
  });
});
