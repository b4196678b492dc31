// The pipeline's stage functions: each takes a cell (its config slice and its dependencies' folders) and
// writes its artifacts into the cell's folder through qsae's public TypeScript APIs.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { align } from "../analysis/index.js";
import { TRANSFER_METRICS, transferWithDetails } from "../analysis/index.js";
import { compareResults } from "../bench/compare.js";
import { loadHumanEval } from "../bench/humaneval.js";
import { runGsm8k, runHumanEval, runMmlu } from "../bench/index.js";
import { modelChoiceScorer, modelCompletionFn } from "../bench/model.js";
import { wilsonInterval } from "../bench/stats.js";
import type { BenchProgress, BenchResult } from "../bench/types.js";
import { extractActivations } from "../model/extract.js";
import type { ExtractHook } from "../model/extract.js";
import type { Precision } from "../model/model.js";
import { Model } from "../model/model.js";
import { readPrompts } from "../model/prompts.js";
import { Tokenizer } from "../model/tokenizer.js";
import { evalSae, parseTrainProgress, Sae, trainSae } from "../sae/index.js";
import type { SpliceEval } from "../sae/splice.js";
import { spliceEvalSaes } from "../sae/splice.js";
import type { MetricRow } from "./cells.js";
import type { BenchmarkName, ExperimentConfig } from "./config.js";
import type { SaeGridEntry } from "./plan.js";
import { modelSpec, SPLICE_METRICS } from "./plan.js";
import type { StageContext, StageFn } from "./runner.js";

interface QuantSlice {
  blocksize?: number;
  double_quant?: boolean;
  int8_threshold?: number;
  compute_dtype?: "fp32" | "bf16" | "fp16";
}

/** Where a train cell put each grid SAE (relative to the cell folder). */
export interface SaeIndexEntry extends SaeGridEntry {
  folder: string;
  d_sae: number;
  d_in: number;
}

async function loadModel(c: ExperimentConfig, ctx: StageContext, name: string, precision: string, q: QuantSlice): Promise<{ model: Model; tok: Tokenizer }> {
  const m = modelSpec(c, name);
  ctx.log(`loading ${m.path} at ${precision} on ${ctx.device}`);
  // A cell of a model split over several devices gets them as "cuda:0,cuda:1": load with that device map.
  const devices = ctx.device.split(",");
  const model = await Model.load(m.path, {
    precision: precision as Precision,
    computeDtype: q.compute_dtype,
    ...(devices.length > 1 ? { devices } : { device: ctx.device }),
    blocksize: q.blocksize,
    doubleQuant: q.double_quant,
    int8Threshold: q.int8_threshold,
    signal: ctx.signal,
  });
  try {
    const tok = await Tokenizer.fromModelDir(m.path);
    return { model, tok };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

const saeLabels = (s: SaeGridEntry) => ({ sae: s.name, sae_type: s.type, expansion: s.expansion, l1: s.l1, seed: s.seed });

export function readSaeIndex(trainDir: string): SaeIndexEntry[] {
  return JSON.parse(readFileSync(join(trainDir, "saes.json"), "utf8")) as SaeIndexEntry[];
}

function benchMetrics(r: BenchResult): MetricRow[] {
  const rows: MetricRow[] = [{ metric: r.metric, value: r.score, ci95: r.ci95, n: r.n, labels: {} }];
  for (const [k, v] of Object.entries(r.passAtK ?? {})) if (k !== r.metric) rows.push({ metric: k, value: v, ci95: null, n: r.n, labels: {} });
  for (const [subject, s] of Object.entries(r.subjects ?? {}))
    rows.push({ metric: "accuracy", value: s.accuracy, ci95: wilsonInterval(s.correct, s.n), n: s.n, labels: { subject } });
  return rows;
}

/** The stage functions for an experiment config. */
export function pipelineStages(c: ExperimentConfig): Record<string, StageFn> {
  return {
    async extract(ctx) {
      const p = ctx.cell.params as { model: string; precision: string; quantization: QuantSlice; hooks: ExtractHook[]; layers: number[]; extraction: ExperimentConfig["extraction"] };
      let prompts = await readPrompts(c.prompts);
      if (p.extraction.max_prompts !== undefined) prompts = prompts.slice(0, p.extraction.max_prompts);
      const { model, tok } = await loadModel(c, ctx, p.model, p.precision, p.quantization);
      try {
        const t0 = Date.now();
        const mf = await extractActivations(model, tok, prompts, {
          out: join(ctx.dir, "store"),
          layers: p.layers,
          hooks: p.hooks,
          dtype: p.extraction.dtype,
          shardRows: p.extraction.shard_rows,
          maxLength: p.extraction.max_tokens,
          skipBos: p.extraction.skip_bos,
          batchSize: p.extraction.batch_size,
          signal: ctx.signal,
          onProgress: (q) => ctx.progress({ done: q.done, total: q.total, unit: "tok" }),
        });
        const seconds = (Date.now() - t0) / 1000;
        return {
          metrics: [{ metric: "n_tokens", value: mf.n_tokens, ci95: null, labels: {} }],
          info: { n_tokens: mf.n_tokens, n_prompts: mf.n_prompts, tokens_per_s: mf.n_tokens / Math.max(seconds, 1e-9), config_hash: model.info.configHash, weights_hash: model.info.weightsHash, bytes: model.bytes },
        };
      } finally {
        model.dispose();
      }
    },

    async train(ctx) {
      const p = ctx.cell.params as { hook: string; layer: number; grid: SaeGridEntry[]; epochs?: number; tokens?: number; batch_size?: number; lr?: number; model: string; precision: string };
      const store = join(ctx.input(ctx.cell.deps[0]), "store");
      const index: SaeIndexEntry[] = [];
      const metrics: MetricRow[] = [];
      const seeds = [...new Set(p.grid.map((g) => g.seed))];
      let tokensPerS = 0;
      for (const seed of seeds) {
        const entries = p.grid.filter((g) => g.seed === seed);
        const type = entries[0].type as "relu" | "topk" | "batchtopk" | "jumprelu";
        const sub = `seed${seed}`;
        const r = await trainSae({
          acts: store,
          hook: p.hook,
          layer: p.layer,
          type,
          expansion: [...new Set(entries.map((e) => e.expansion))],
          l1: [...new Set(entries.map((e) => e.l1))],
          k: entries[0].k,
          epochs: p.epochs,
          tokens: p.tokens,
          batchSize: p.batch_size,
          lr: p.lr,
          seed,
          device: ctx.device,
          out: join(ctx.dir, sub),
          metadata: { model: p.model, precision: p.precision, hook: p.hook, layer: p.layer },
          signal: ctx.signal,
          onProgress: (q) => {
            const t = parseTrainProgress(q);
            ctx.progress({ done: q.done, total: q.total, unit: "tok", message: t ? `loss ${t.loss.toPrecision(3)}  L0 ${t.l0.toFixed(1)}  dead ${(100 * t.dead).toFixed(0)}%` : undefined });
          },
        });
        tokensPerS = r.tokensPerSecond;
        for (const e of entries) {
          const dSae = Math.round(e.expansion * r.dIn);
          const trained = r.saes.find((s) => s.dSae === dSae && (type !== "relu" && type !== "jumprelu" ? true : Math.abs(s.l1 - e.l1) <= 1e-12 * Math.max(1, e.l1)));
          if (!trained) throw new Error(`trainSae returned no SAE for ${e.name} (d_sae ${dSae}); got ${r.saes.map((s) => s.name).join(", ")}`);
          const folder = trained.folder.startsWith(ctx.dir) ? trained.folder.slice(ctx.dir.length + 1) : join(sub, trained.folder.split("/").pop()!);
          index.push({ ...e, folder, d_sae: dSae, d_in: r.dIn });
          const ev = await evalSae(join(ctx.dir, folder), store, { hook: p.hook, layer: p.layer, signal: ctx.signal });
          const labels = saeLabels(e);
          metrics.push(
            { metric: "mse", value: ev.mse, ci95: null, n: ev.n_tokens, labels },
            { metric: "explained_variance", value: ev.explained_variance, ci95: null, n: ev.n_tokens, labels },
            { metric: "l0", value: ev.l0, ci95: null, n: ev.n_tokens, labels },
            { metric: "dead_fraction", value: ev.dead_fraction, ci95: null, n: ev.n_tokens, labels },
            { metric: "d_sae", value: ev.d_sae, ci95: null, labels },
          );
        }
      }
      writeFileSync(join(ctx.dir, "saes.json"), `${JSON.stringify(index, null, 1)}\n`);
      return { metrics, info: { tokens_per_s: tokensPerS } };
    },

    async transfer(ctx) {
      const p = ctx.cell.params as { hook: string; layer: number; k: number; sae_precision: string; a: string; b: string };
      const [trainId] = ctx.cell.deps;
      const model = String(ctx.cell.labels?.model);
      const storeOf = (prec: string) => join(ctx.input(`extract:${model}:${prec}`), "store");
      const metrics: MetricRow[] = [];
      for (const s of readSaeIndex(ctx.input(trainId))) {
        const { result, details } = await transferWithDetails({
          sae: join(ctx.input(trainId), s.folder),
          actsA: storeOf(p.a),
          actsB: storeOf(p.b),
          hook: p.hook,
          layer: p.layer,
          k: p.k,
          device: ctx.device,
          signal: ctx.signal,
          onProgress: (q) => ctx.progress({ done: q.done, total: q.total, unit: q.unit || "it", message: s.name }),
        });
        for (const name of TRANSFER_METRICS) {
          const v = result[name];
          if (v === null || v === undefined) continue;
          const ci = result.ci95?.[name];
          metrics.push({ metric: name, value: v, ci95: ci && ci[0] !== null && ci[1] !== null ? [ci[0], ci[1]] : null, n: details.units, labels: saeLabels(s) });
        }
      }
      return { metrics };
    },

    async align(ctx) {
      const [refId, precId] = ctx.cell.deps;
      const ref = readSaeIndex(ctx.input(refId));
      const other = readSaeIndex(ctx.input(precId));
      const metrics: MetricRow[] = [];
      const info: Record<string, unknown> = {};
      for (const s of ref) {
        const o = other.find((x) => x.name === s.name);
        if (!o) throw new Error(`${precId} has no SAE ${s.name}`);
        const r = await align(join(ctx.input(refId), s.folder), join(ctx.input(precId), o.folder), { signal: ctx.signal });
        for (const name of ["matched_cosine", "procrustes_alignment", "frac_cosine_ge_0_7", "encoder_matched_cosine", "encoder_procrustes_alignment", "encoder_frac_cosine_ge_0_7"] as const)
          metrics.push({ metric: name, value: r[name], ci95: null, n: r.n_features, labels: saeLabels(s) });
        info[s.name] = { assignment: r.assignment, gap_bound: r.gap_bound, encoder_gap_bound: r.encoder_gap_bound };
      }
      return { metrics, info };
    },

    async splice(ctx) {
      const p = ctx.cell.params as { sites: { hook: string; layer: number }[]; precision: string; reference: string; quantization: QuantSlice; prompts: number; max_tokens: number; batch_size?: number };
      const modelName = String(ctx.cell.labels?.model);
      const prompts = (await readPrompts(c.prompts)).slice(0, p.prompts);
      // The model is loaded once for all sites.
      const { model, tok } = await loadModel(c, ctx, modelName, p.precision, p.quantization);
      const metrics: MetricRow[] = [];
      const results: (SpliceEval & { sae_precision: string; sae: string })[] = [];
      try {
        const ids = prompts.map((t) => tok.encode(t));
        const maxLength = Math.min(p.max_tokens, model.info.maxPositions);
        const n = ids.filter((t) => Math.min(t.length, maxLength) >= 2).length;
        for (const [si, site] of p.sites.entries()) {
          const trainOf = (prec: string) => `train:${modelName}:${prec}:${site.hook}.${site.layer}`;
          // The reference's SAEs first, then this precision's own (the same ones at the reference precision).
          const sources = [...new Set([p.reference, p.precision])].flatMap((prec) =>
            readSaeIndex(ctx.input(trainOf(prec))).map((s) => ({ prec, s, folder: join(ctx.input(trainOf(prec)), s.folder) })),
          );
          // All of the site's SAEs in one pass over the prompts: the clean and zero-ablated forwards run once.
          const saes: Sae[] = [];
          let rs: SpliceEval[];
          try {
            for (const src of sources) saes.push(await Sae.load(src.folder));
            rs = await spliceEvalSaes(model, saes, ids, {
              hook: site.hook,
              layer: site.layer,
              maxLength,
              batchSize: p.batch_size,
              signal: ctx.signal,
              onProgress: (q) =>
                ctx.progress({ done: si * n + q.done, total: p.sites.length * n, unit: "prompts", message: `${site.hook}.${site.layer}: ${sources.length} SAEs` }),
            });
          } finally {
            for (const sae of saes) sae.dispose();
          }
          for (const [i, src] of sources.entries()) {
            const r = rs[i];
            results.push({ ...r, sae_precision: src.prec, sae: src.s.name });
            const labels = { ...saeLabels(src.s), hook: site.hook, layer: site.layer, sae_precision: src.prec };
            for (const name of SPLICE_METRICS) {
              // ce_score is undefined when zeroing the site costs nothing (CE_zero = CE_orig): left out, kept in splice.json
              if (!Number.isFinite(r[name])) continue;
              metrics.push({ metric: name, value: r[name], ci95: null, n: r.tokens, labels });
            }
          }
        }
        writeFileSync(join(ctx.dir, "splice.json"), `${JSON.stringify(results, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v), 1)}\n`);
        return { metrics, info: { prompts: n, sites: p.sites.length, tokens: results[0]?.tokens ?? 0 } };
      } finally {
        model.dispose();
      }
    },

    async bench(ctx) {
      const p = ctx.cell.params as { task: BenchmarkName; precision: string; quantization: QuantSlice };
      const b = c.benchmarks[p.task]!;
      const { model, tok } = await loadModel(c, ctx, String(ctx.cell.labels?.model), p.precision, p.quantization);
      try {
        const onProgress = (q: BenchProgress) => ctx.progress({ done: q.done, total: q.total, unit: "items", message: q.phase });
        const meta = { model: model.info.path, precision: model.info.precision, computeDtype: model.info.computeDtype, device: model.info.device };
        const common = { data: b.data, limit: b.limit, batchSize: b.batch_size, signal: ctx.signal, onProgress, meta };
        let r: BenchResult;
        if (p.task === "humaneval") {
          const h = c.benchmarks.humaneval!;
          r = await runHumanEval({
            ...common,
            complete: modelCompletionFn(model, tok, { batchSize: b.batch_size }),
            maxNewTokens: h.max_new_tokens,
            chat: h.chat,
            timeoutMs: h.timeout_s !== undefined ? h.timeout_s * 1000 : undefined,
          });
        } else if (p.task === "gsm8k") {
          const g = c.benchmarks.gsm8k!;
          r = await runGsm8k({ ...common, complete: modelCompletionFn(model, tok, { batchSize: b.batch_size }), maxNewTokens: g.max_new_tokens, shots: g.shots, train: g.train, chat: g.chat });
        } else {
          const mm = c.benchmarks.mmlu!;
          const subjects = mm.subjects === undefined ? undefined : Array.isArray(mm.subjects) ? mm.subjects : [mm.subjects];
          r = await runMmlu({ ...common, subjects, shots: mm.shots, scorer: modelChoiceScorer(model, tok) });
        }
        writeFileSync(join(ctx.dir, "result.json"), `${JSON.stringify(r, null, 1)}\n`);
        return { metrics: benchMetrics(r), info: { items_per_s: r.meta.itemsPerSecond } };
      } finally {
        model.dispose();
      }
    },

    async compare(ctx) {
      const p = ctx.cell.params as { task: BenchmarkName; reference: string; precision: string };
      const [refId, otherId] = ctx.cell.deps;
      const load = (id: string) => JSON.parse(readFileSync(join(ctx.input(id), "result.json"), "utf8")) as BenchResult;
      const a = load(refId);
      const b = load(otherId);
      const cmp = compareResults(a, b);
      let prompts = new Map<string, string>();
      if (p.task === "humaneval") prompts = new Map(loadHumanEval(c.benchmarks.humaneval!.data).map((x) => [x.task_id, x.prompt]));
      const side = (it: BenchResult["items"][number]) => ({ result: it.result, completion: it.completion, answer: it.answer });
      const flips = [
        ...cmp.passToFail.map((f) => ({ id: f.id, direction: "pass→fail" as const, reference: side(f.a), other: side(f.b), prompt: prompts.get(f.id) })),
        ...cmp.failToPass.map((f) => ({ id: f.id, direction: "fail→pass" as const, reference: side(f.a), other: side(f.b), prompt: prompts.get(f.id) })),
      ];
      const set = {
        model: String(ctx.cell.labels?.model),
        benchmark: p.task,
        reference: p.reference,
        precision: p.precision,
        n: cmp.n,
        passToFail: cmp.passToFail.length,
        failToPass: cmp.failToPass.length,
        mcnemarP: cmp.pValue,
        flips,
      };
      writeFileSync(join(ctx.dir, "flips.json"), `${JSON.stringify(set, null, 1)}\n`);
      return {
        metrics: [
          { metric: "pass_to_fail", value: cmp.passToFail.length, ci95: null, n: cmp.n, labels: {} },
          { metric: "fail_to_pass", value: cmp.failToPass.length, ci95: null, n: cmp.n, labels: {} },
          { metric: "score_delta", value: cmp.scoreB - cmp.scoreA, ci95: null, n: cmp.n, labels: {} },
          { metric: "mcnemar_p", value: cmp.pValue, ci95: null, n: cmp.n, labels: {} },
        ],
      };
    },
  };
}
