// Cells: the nodes of an experiment DAG. A cell's key is a hash of everything its output depends on
// (stage, its config slice, hashes of external inputs, its dependencies' keys, the qsae version), so its
// output folder under RUNDIR is valid exactly as long as those stay the same.
import { join } from "node:path";

import { VERSION } from "../version.js";
import { hashValue } from "./hash.js";

/** A metric produced by a cell; `ci95` is a 95% interval where the producer computed one. */
export interface MetricRow {
  metric: string;
  value: number;
  ci95: [number, number] | null;
  n?: number;
  /** labels identifying what was measured: model, precision, reference, hook, layer, sae, benchmark ... */
  labels: Record<string, string | number>;
}

export interface CellSpec {
  /** unique, human-readable: `extract:tiny:nf4` */
  id: string;
  stage: string;
  /** ids of cells whose outputs this one reads */
  deps: string[];
  /** the config slice this cell depends on (hashed into the key; also handed to the stage) */
  params: Record<string, unknown>;
  /** hashes of files read from outside RUNDIR (model folders, prompt sets, data files) */
  inputs?: Record<string, string>;
  /** labels copied onto its metrics and shown in progress lines */
  labels?: Record<string, string | number>;
  /** how many devices the cell occupies at once (a model split over several GPUs); 1 by default. Not hashed:
   * a device map gives the same outputs. */
  devices?: number;
}

export interface Cell extends CellSpec {
  key: string;
  /** folder relative to RUNDIR */
  dir: string;
}

export function cellSlug(id: string): string {
  return id.replace(/[^A-Za-z0-9._=-]+/g, "_");
}

/**
 * Computes every cell's key and folder, in dependency order. Throws on unknown dependencies, duplicate
 * ids and cycles. Returns the cells topologically sorted (stable: ties keep the input order).
 */
export function keyCells(specs: CellSpec[], version: string = VERSION): Cell[] {
  const byId = new Map<string, CellSpec>();
  for (const s of specs) {
    if (byId.has(s.id)) throw new Error(`duplicate cell id ${s.id}`);
    byId.set(s.id, s);
  }
  for (const s of specs) for (const d of s.deps) if (!byId.has(d)) throw new Error(`cell ${s.id} depends on unknown cell ${d}`);
  const out: Cell[] = [];
  const keyed = new Map<string, Cell>();
  const visiting = new Set<string>();
  const visit = (s: CellSpec) => {
    if (keyed.has(s.id)) return;
    if (visiting.has(s.id)) throw new Error(`dependency cycle through cell ${s.id}`);
    visiting.add(s.id);
    for (const d of s.deps) visit(byId.get(d)!);
    visiting.delete(s.id);
    const depKeys = Object.fromEntries(s.deps.map((d) => [d, keyed.get(d)!.key]));
    const key = hashValue({ stage: s.stage, params: s.params, inputs: s.inputs ?? {}, deps: depKeys, qsae: version });
    const cell: Cell = { ...s, key, dir: join("cells", s.stage, `${cellSlug(s.id)}-${key.slice(0, 16)}`) };
    keyed.set(s.id, cell);
    out.push(cell);
  };
  for (const s of specs) visit(s);
  return out;
}

/** Parses `i/N`: shard i (0-based) of N. */
export function parseShard(spec: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(spec.trim());
  if (!m) throw new Error(`--shard: expected i/N (e.g. 0/4), received '${spec}'`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || index >= count) throw new Error(`--shard: index ${index} is out of range for ${count} shards (use 0..${count - 1})`);
  return { index, count };
}

/** The shard from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (with SLURM_ARRAY_TASK_MIN as the base), if set. */
export function shardFromEnv(env: NodeJS.ProcessEnv = process.env): { index: number; count: number } | null {
  const id = env.SLURM_ARRAY_TASK_ID;
  const count = env.SLURM_ARRAY_TASK_COUNT;
  if (id === undefined || count === undefined) return null;
  const base = Number(env.SLURM_ARRAY_TASK_MIN ?? 0);
  const index = Number(id) - base;
  const n = Number(count);
  if (!Number.isInteger(index) || !Number.isInteger(n) || n < 1 || index < 0 || index >= n)
    throw new Error(`SLURM_ARRAY_TASK_ID=${id} (min ${base}) and SLURM_ARRAY_TASK_COUNT=${count} do not give a shard in 0..count-1`);
  return { index, count: n };
}

/**
 * Deterministic assignment of cells to shards: within each stage, cells sorted by id are dealt round-robin,
 * so every stage's work spreads evenly over the shards.
 */
export function shardOf(cells: Cell[], count: number): Map<string, number> {
  const byStage = new Map<string, Cell[]>();
  for (const c of cells) byStage.set(c.stage, [...(byStage.get(c.stage) ?? []), c]);
  const out = new Map<string, number>();
  for (const list of byStage.values()) {
    [...list].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).forEach((c, i) => out.set(c.id, i % count));
  }
  return out;
}
