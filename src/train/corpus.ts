// Text corpora for training small language models: every file with the given extensions under the
// given folders, in a deterministic order, split into train and held-out sets by a hash of the path.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

export interface CorpusFile {
  /** path relative to its root, used for the split */
  name: string;
  path: string;
  bytes: number;
}

export interface CorpusOptions {
  roots: string[];
  extensions?: string[];
  /** fraction of files (by hash of the relative path) held out for evaluation */
  heldOutFraction?: number;
  /** skip files larger than this (generated tables and the like) */
  maxFileBytes?: number;
  /** skip paths containing any of these substrings */
  exclude?: string[];
}

export interface Corpus {
  train: CorpusFile[];
  heldOut: CorpusFile[];
}

function walk(dir: string, out: string[]): void {
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(dir, e);
    let st;
    try {
      st = statSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) walk(p, out);
    else if (st.isFile()) out.push(p);
  }
}

/** Hash of a name mapped to [0, 1): stable across machines, so the split is reproducible. */
export function unitHash(name: string): number {
  return createHash("sha256").update(name).digest().readUInt32BE(0) / 2 ** 32;
}

export function collectCorpus(opts: CorpusOptions): Corpus {
  const exts = opts.extensions ?? [".py"];
  const held = opts.heldOutFraction ?? 0.05;
  const maxBytes = opts.maxFileBytes ?? 200_000;
  const corpus: Corpus = { train: [], heldOut: [] };
  for (const root of opts.roots) {
    const files: string[] = [];
    walk(root, files);
    for (const path of files) {
      if (!exts.some((e) => path.endsWith(e))) continue;
      if (opts.exclude?.some((x) => path.includes(x))) continue;
      const bytes = statSync(path).size;
      if (bytes === 0 || bytes > maxBytes) continue;
      const name = relative(root, path);
      (unitHash(name) < held ? corpus.heldOut : corpus.train).push({ name, path, bytes });
    }
  }
  return corpus;
}

export function readCorpusText(files: CorpusFile[]): string[] {
  return files.map((f) => readFileSync(f.path, "utf8"));
}
