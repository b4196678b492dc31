// File helpers of the benchmarks: JSONL (plain or .gz) and CSV readers whose errors name the file and
// line, and atomic writes (temp file + rename) for results.
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { gunzipSync } from "node:zlib";

import { InputError } from "../errors.js";

/** Reads a text file, gunzipping `.gz` files (or any file starting with the gzip magic bytes). */
export function readTextFile(path: string, what = "data file"): string {
  if (!existsSync(path)) throw new InputError(`${path}: ${what} not found`);
  if (statSync(path).isDirectory()) throw new InputError(`${path}: expected a ${what}, found a folder`);
  let buf = readFileSync(path);
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf);
    } catch (e) {
      throw new InputError(`${path}: not a valid gzip file (${(e as Error).message})`);
    }
  }
  return buf.toString("utf8");
}

export interface JsonlLine {
  /** 1-based line number in the file. */
  line: number;
  value: Record<string, unknown>;
}

/** Parses JSONL: one JSON object per non-empty line. Errors name the file and the line. */
export function readJsonl(path: string, what = "JSONL file"): JsonlLine[] {
  const text = readTextFile(path, what);
  const out: JsonlLine[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const s = lines[i].trim();
    if (!s) continue;
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch (e) {
      throw new InputError(`${path}:${i + 1}: bad JSON (${(e as Error).message})`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new InputError(`${path}:${i + 1}: expected a JSON object on each line`);
    }
    out.push({ line: i + 1, value: v as Record<string, unknown> });
  }
  return out;
}

/** A required string field of a JSONL record; the error names file, line and field. */
export function stringField(path: string, l: JsonlLine, field: string, allowEmpty = true): string {
  const v = l.value[field];
  if (typeof v !== "string") {
    throw new InputError(
      `${path}:${l.line}: ${v === undefined ? "missing field" : "expected a string for field"} "${field}"`,
    );
  }
  if (!allowEmpty && v.trim() === "") throw new InputError(`${path}:${l.line}: field "${field}" is empty`);
  return v;
}

/** A required non-negative integer field (also accepts integer strings, as some exporters write them). */
export function indexField(path: string, l: JsonlLine, field: string): number {
  const v = l.value[field];
  const n = typeof v === "string" && /^\d+$/.test(v.trim()) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0) {
    throw new InputError(
      `${path}:${l.line}: ${v === undefined ? "missing field" : "expected a non-negative integer for field"} "${field}"`,
    );
  }
  return n;
}

export interface CsvRow {
  /** 1-based line where the row starts. */
  line: number;
  fields: string[];
}

/** RFC 4180 CSV: commas, double-quoted fields with "" escapes and embedded newlines; CRLF or LF. */
export function parseCsv(text: string, path: string): CsvRow[] {
  const rows: CsvRow[] = [];
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  while (i < n) {
    // one row
    const rowLine = line;
    const fields: string[] = [];
    for (;;) {
      let value: string;
      if (text[i] === '"') {
        const qLine = line;
        let parts = "";
        let j = i + 1;
        for (;;) {
          const q = text.indexOf('"', j);
          if (q < 0) throw new InputError(`${path}:${qLine}: unterminated quoted field`);
          parts += text.slice(j, q);
          if (text[q + 1] === '"') {
            parts += '"';
            j = q + 2;
          } else {
            j = q + 1;
            break;
          }
        }
        for (let k = i; k < j; k++) if (text.charCodeAt(k) === 10) line++;
        value = parts;
        // anything between the closing quote and the delimiter is kept, as lenient parsers do
        let k = j;
        while (k < n && text[k] !== "," && text[k] !== "\n" && text[k] !== "\r") k++;
        value += text.slice(j, k);
        i = k;
      } else {
        let k = i;
        while (k < n && text[k] !== "," && text[k] !== "\n" && text[k] !== "\r") k++;
        value = text.slice(i, k);
        i = k;
      }
      fields.push(value);
      if (i < n && text[i] === ",") {
        i++;
        continue;
      }
      if (i < n && text[i] === "\r") i++;
      if (i < n && text[i] === "\n") {
        i++;
        line++;
      }
      break;
    }
    if (!(fields.length === 1 && fields[0] === "")) rows.push({ line: rowLine, fields });
  }
  return rows;
}

/** Writes a file atomically: a temp file beside it, then rename. */
export function writeFileAtomic(path: string, data: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}
