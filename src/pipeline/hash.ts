// Content hashes for cell keys: a stable JSON form of config slices, and digests of input files.
import { createHash } from "node:crypto";
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";

/** JSON with object keys sorted at every level (undefined members dropped), so equal values hash equally. */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) return JSON.stringify(String(value));
    return JSON.stringify(value) ?? "null";
  }
  if (Array.isArray(value)) return `[${value.map((v) => stableStringify(v)).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify(obj[k])}`).join(",")}}`;
}

export function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

export function hashValue(value: unknown): string {
  return sha256(stableStringify(value));
}

/** sha256 of a file's bytes. */
export function hashFile(path: string): string {
  return sha256(readFileSync(path));
}

/** sha256 over the files of a folder (recursively, sorted by relative path): names and contents. */
export function hashTree(dir: string): string {
  const h = createHash("sha256");
  const walk = (rel: string) => {
    const entries = readdirSync(join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) {
        h.update(`${r}\0`);
        h.update(readFileSync(join(dir, r)));
        h.update("\0");
      }
    }
  };
  walk("");
  return h.digest("hex");
}

/** Hash of a file or folder path's contents. */
export function hashPath(path: string): string {
  return statSync(path).isDirectory() ? hashTree(path) : hashFile(path);
}

/**
 * Identity of a Hugging Face model folder without reading its weights: config.json and tokenizer files
 * in full, and for every `*.safetensors` file its size and header (names, dtypes, shapes, offsets).
 */
export function hashModelFolder(dir: string): { configHash: string; weightsHash: string; tokenizerHash: string } {
  const configHash = hashFile(join(dir, "config.json"));
  const files = readdirSync(dir).sort();
  const w = createHash("sha256");
  for (const f of files.filter((f) => f.endsWith(".safetensors"))) {
    const p = join(dir, f);
    const size = statSync(p).size;
    w.update(`${f}\0${size}\0`);
    const fd = openSync(p, "r");
    try {
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const n = Number(lenBuf.readBigUInt64LE(0));
      if (n > 0 && n < 100 * 1024 * 1024 && n + 8 <= size) {
        const header = Buffer.alloc(n);
        readSync(fd, header, 0, n, 8);
        w.update(header);
      }
    } finally {
      closeSync(fd);
    }
  }
  const t = createHash("sha256");
  for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]) {
    try {
      t.update(`${f}\0`);
      t.update(readFileSync(join(dir, f)));
    } catch {
      t.update("absent\0");
    }
  }
  return { configHash, weightsHash: w.digest("hex"), tokenizerHash: t.digest("hex") };
}
