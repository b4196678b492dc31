// From an experiment config to the DAG of cells:
//   extract:<model>:<precision>                    one model load per precision, all hooks and layers in one pass
//   train:<model>:<precision>:<hook>.<layer>       the SAE grid of one layer, in one pass over its activations
//   transfer:<model>:<hook>.<layer>:<sae>:<a>-><b> the <sae> precision's SAEs applied to <a> and <b> activations
//   align:<model>:<hook>.<layer>:<ref>~<p>         each grid SAE of <p> aligned with the reference's
//   splice:<model>:<precision>                     the model loaded at <precision> once; at every site the
//                                                  reference's and <precision>'s own SAEs spliced into its forward pass
//   bench:<model>:<precision>:<task>               one benchmark at one precision
//   compare:<model>:<task>:<ref>-><p>              flipped items and McNemar's test between two precisions
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";

import { InputError } from "../errors.js";
import type { Cell, CellSpec } from "./cells.js";
import { keyCells } from "./cells.js";
import type { BenchmarkName, ExperimentConfig } from "./config.js";
import { BENCHMARKS, readNumLayers, resolveLayers } from "./config.js";
import { hashModelFolder, hashPath } from "./hash.js";

export interface SaeGridEntry {
  /** `relu-x0.5-l1_0.0005-s0`: the folder name of this SAE inside a train cell */
  name: string;
  type: string;
  expansion: number;
  l1: number;
  seed: number;
  k?: number;
}

export function saeGrid(c: ExperimentConfig): SaeGridEntry[] {
  const out: SaeGridEntry[] = [];
  const usesL1 = c.sae.type === "relu" || c.sae.type === "jumprelu";
  for (const expansion of c.sae.expansions)
    for (const l1 of usesL1 ? c.sae.l1 : [0])
      for (const seed of c.sae.seeds) {
        const parts = [c.sae.type, `x${expansion}`, usesL1 ? `l1_${l1}` : `k${c.sae.k}`, `s${seed}`];
        out.push({ name: parts.join("-"), type: c.sae.type, expansion, l1, seed, ...(c.sae.k !== undefined ? { k: c.sae.k } : {}) });
      }
  return out;
}

/** The quantization settings that matter for a precision (so that changing int8's threshold leaves nf4 cells alone). */
export function quantSlice(c: ExperimentConfig, precision: string): Record<string, unknown> {
  const q = c.quantization;
  const slice: Record<string, unknown> = {};
  if (precision === "nf4" || precision === "fp4") Object.assign(slice, { blocksize: q.blocksize, double_quant: q.double_quant });
  if (precision === "int8") slice.int8_threshold = q.int8_threshold;
  if (["int8", "nf4", "fp4"].includes(precision) && q.compute_dtype) slice.compute_dtype = q.compute_dtype;
  return slice;
}

/** The splice stage's metrics per SAE (see spliceEvalSae): cross-entropies, loss recovered, KL from the clean model. */
export const SPLICE_METRICS = ["ce_orig", "ce_sae", "ce_zero", "ce_score", "kl_sae", "kl_zero"] as const;

export interface TransferPair {
  sae: string;
  a: string;
  b: string;
}

export function transferPairs(c: ExperimentConfig): TransferPair[] {
  if (c.transfer.pairs) return c.transfer.pairs.map((p) => ({ sae: p.sae ?? c.reference, a: p.a ?? c.reference, b: p.b }));
  return c.precisions.filter((p) => p !== c.reference).map((b) => ({ sae: c.reference, a: c.reference, b }));
}

export interface Plan {
  cells: Cell[];
  layers: Record<string, number[]>;
  grid: SaeGridEntry[];
}

export interface PlanOptions {
  /** hashes of inputs computed by an earlier call (model folder → hashes), to avoid re-reading */
  cache?: Map<string, string>;
}

/** Builds the keyed DAG. Reads model config.json files (layer count) and hashes the inputs. */
export function buildPlan(c: ExperimentConfig, opts: PlanOptions = {}): Plan {
  const cache = opts.cache ?? new Map<string, string>();
  const memo = (k: string, f: () => string) => {
    if (!cache.has(k)) cache.set(k, f());
    return cache.get(k)!;
  };
  const specs: CellSpec[] = [];
  const grid = saeGrid(c);
  const layersByModel: Record<string, number[]> = {};
  const promptsHash = memo(`prompts:${c.prompts}`, () => hashPath(c.prompts));
  const pairs = transferPairs(c);

  for (const m of c.models) {
    const numLayers = readNumLayers(m.path);
    const layers = resolveLayers(c.layers, numLayers);
    layersByModel[m.name] = layers;
    const modelHash = memo(`model:${m.path}`, () => {
      const h = hashModelFolder(m.path);
      return `${h.configHash}:${h.weightsHash}:${h.tokenizerHash}`;
    });
    const sites = c.hooks.flatMap((hook) => layers.map((layer) => ({ hook, layer })));
    for (const p of c.precisions) {
      specs.push({
        id: `extract:${m.name}:${p}`,
          ...(m.devices > 1 ? { devices: m.devices } : {}),
        stage: "extract",
        deps: [],
        params: { model: m.name, precision: p, quantization: quantSlice(c, p), hooks: c.hooks, layers, extraction: c.extraction },
        inputs: { model: modelHash, prompts: promptsHash },
        labels: { model: m.name, precision: p },
      });
      for (const s of sites)
        specs.push({
          id: `train:${m.name}:${p}:${s.hook}.${s.layer}`,
          stage: "train",
          deps: [`extract:${m.name}:${p}`],
          params: {
            hook: s.hook,
            layer: s.layer,
            grid,
            epochs: c.sae.epochs,
            tokens: c.sae.tokens,
            batch_size: c.sae.batch_size,
            lr: c.sae.lr,
            // SAE metadata records these
            model: m.name,
            precision: p,
          },
          labels: { model: m.name, precision: p, hook: s.hook, layer: s.layer },
        });
    }
    for (const s of sites) {
      for (const pair of pairs) {
        specs.push({
          id: `transfer:${m.name}:${s.hook}.${s.layer}:${pair.sae}:${pair.a}->${pair.b}`,
          stage: "transfer",
          deps: [...new Set([`train:${m.name}:${pair.sae}:${s.hook}.${s.layer}`, `extract:${m.name}:${pair.a}`, `extract:${m.name}:${pair.b}`])],
          params: { hook: s.hook, layer: s.layer, k: c.transfer.k, sae_precision: pair.sae, a: pair.a, b: pair.b },
          labels: { model: m.name, hook: s.hook, layer: s.layer, sae_precision: pair.sae, reference: pair.a, precision: pair.b },
        });
      }
      if (c.transfer.align)
        for (const p of c.precisions.filter((p) => p !== c.reference))
          specs.push({
            id: `align:${m.name}:${s.hook}.${s.layer}:${c.reference}~${p}`,
            stage: "align",
            deps: [`train:${m.name}:${c.reference}:${s.hook}.${s.layer}`, `train:${m.name}:${p}:${s.hook}.${s.layer}`],
            params: { hook: s.hook, layer: s.layer, reference: c.reference, precision: p },
            labels: { model: m.name, hook: s.hook, layer: s.layer, reference: c.reference, precision: p },
          });
    }
    // One splice cell per precision: the model is loaded once and every site's SAEs are spliced in turn.
    if (c.splice.enabled)
      for (const p of c.precisions)
        specs.push({
          id: `splice:${m.name}:${p}`,
          ...(m.devices > 1 ? { devices: m.devices } : {}),
          stage: "splice",
          deps: [...new Set(sites.flatMap((s) => [`train:${m.name}:${c.reference}:${s.hook}.${s.layer}`, `train:${m.name}:${p}:${s.hook}.${s.layer}`]))],
          params: {
            sites,
            precision: p,
            reference: c.reference,
            quantization: quantSlice(c, p),
            prompts: c.splice.prompts,
            max_tokens: c.splice.max_tokens,
            batch_size: c.splice.batch_size,
          },
          inputs: { model: modelHash, prompts: promptsHash },
          labels: { model: m.name, precision: p, reference: c.reference },
        });
    for (const task of BENCHMARKS) {
      const b = c.benchmarks[task];
      if (!b) continue;
      const dataHash = memo(`data:${task}:${b.data}`, () => benchDataHash(task, b.data, (b as { train?: string }).train));
      for (const p of c.precisions)
        specs.push({
          id: `bench:${m.name}:${p}:${task}`,
          ...(m.devices > 1 ? { devices: m.devices } : {}),
          stage: "bench",
          deps: [],
          params: { task, precision: p, quantization: quantSlice(c, p), settings: { ...b, data: undefined, train: undefined } },
          inputs: { model: modelHash, data: dataHash },
          labels: { model: m.name, precision: p, benchmark: task },
        });
      for (const p of c.precisions.filter((p) => p !== c.reference))
        specs.push({
          id: `compare:${m.name}:${task}:${c.reference}->${p}`,
          stage: "compare",
          deps: [`bench:${m.name}:${c.reference}:${task}`, `bench:${m.name}:${p}:${task}`],
          params: { task, reference: c.reference, precision: p },
          labels: { model: m.name, benchmark: task, reference: c.reference, precision: p },
        });
    }
  }
  return { cells: keyCells(specs), layers: layersByModel, grid };
}

function benchDataHash(task: BenchmarkName, data: string, train?: string): string {
  if (!existsSync(data)) throw new InputError(`benchmarks.${task}.data: ${data} does not exist`);
  if (task === "gsm8k") {
    // The few-shot examples come from train.jsonl beside test.jsonl unless given.
    const t = train ?? join(data, "..", "train.jsonl");
    return `${hashPath(data)}:${existsSync(t) ? hashPath(t) : "no-train"}`;
  }
  if (task === "mmlu" && !statSync(data).isDirectory()) throw new InputError(`benchmarks.mmlu.data: ${data} is not a folder (expected dev/ and test/ CSV folders)`);
  return hashPath(data);
}

export function modelSpec(c: ExperimentConfig, name: string) {
  const m = c.models.find((x) => x.name === name);
  if (!m) throw new Error(`no model named ${name} in the config`);
  return m;
}
