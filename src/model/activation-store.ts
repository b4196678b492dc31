// Activation stores: a folder with manifest.json and shards shard-NNNNN.safetensors holding
// `acts.<hook>.<layer>` [N, D], `tokens` [N] I64, `doc` [N] I32, `pos` [N] I32 (docs/CONTRACTS format).
// The writer fills shards row by row and publishes the folder atomically (DIR.tmp-PID, then rename);
// the reader checks the manifest against the shards and reads shards or, for small stores, whole tensors.
import { existsSync, statSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";

import { z } from "zod";

import { InputError } from "../errors.js";
import { inspectCheckpoint, loadSafetensors, saveSafetensors } from "../io/safetensors.js";
import { Tensor } from "../tensor.js";
import type { AnyTypedArray, DTypeName } from "../tensor.js";

export type StoreDtype = "fp32" | "bf16" | "fp16";

const manifestSchema = z.object({
  format: z.literal("qsae-activations"),
  version: z.literal(1),
  qsae_version: z.string(),
  model: z.object({
    path: z.string(),
    architecture: z.string(),
    config_hash: z.string(),
    weights_hash: z.string(),
  }),
  precision: z.string(),
  compute_dtype: z.string(),
  quantization: z
    .object({
      type: z.enum(["nf4", "fp4", "int8"]).optional(),
      blocksize: z.number().nullable().optional(),
      double_quant: z.boolean().nullable().optional(),
      int8_threshold: z.number().nullable().optional(),
      prequantized: z.boolean().optional(),
    })
    .nullable(),
  hooks: z.array(z.string()),
  layers: z.array(z.number().int().nonnegative()),
  d_model: z.number().int().positive(),
  dtype: z.enum(["fp32", "bf16", "fp16"]),
  n_tokens: z.number().int().nonnegative(),
  n_prompts: z.number().int().nonnegative(),
  prompts_hash: z.string(),
  skip_bos: z.boolean(),
  shards: z.array(z.object({ file: z.string(), rows: z.number().int().nonnegative() })),
  // Extensions beyond the contract's fields: optional for readers.
  max_length: z.number().int().positive().optional(),
  add_special_tokens: z.boolean().optional(),
  created: z.string().optional(),
});

export type ActivationManifest = z.infer<typeof manifestSchema>;

/** The name of an activation tensor in a shard: `acts.<hook>.<layer>`. */
export function actsName(hook: string, layer: number): string {
  return `acts.${hook}.${layer}`;
}

const STORE_TO_ST: Record<StoreDtype, string> = { fp32: "F32", bf16: "BF16", fp16: "F16" };
const ST_TO_STORE: Record<string, StoreDtype> = { F32: "fp32", BF16: "bf16", F16: "fp16" };

export interface StoreWriterOptions {
  /** Activation tensor names (`acts.<hook>.<layer>`). */
  names: string[];
  /** Row width D. */
  d: number;
  /** Stored dtype (rows arrive as fp32 and are rounded to nearest-even on write). Default fp32. */
  dtype?: StoreDtype;
  /** Rows per shard (the last one may hold fewer). */
  shardRows: number;
  /** Replace an existing folder at `dir` when finishing. Default false: error up front. */
  overwrite?: boolean;
}

/**
 * Writes a store into `DIR.tmp-PID` and renames it to `DIR` in finish(); abort() (or a crash) never
 * leaves a half-written `DIR`.
 */
export class ActivationStoreWriter {
  readonly dir: string;
  readonly tmp: string;
  readonly #o: Required<StoreWriterOptions>;
  readonly #acts: Map<string, Float32Array>;
  #tokens: BigInt64Array;
  #doc: Int32Array;
  #pos: Int32Array;
  #fill = 0;
  #shards: { file: string; rows: number }[] = [];
  #rows = 0;
  #closed = false;

  private constructor(dir: string, o: Required<StoreWriterOptions>) {
    this.dir = resolve(dir);
    this.tmp = `${this.dir}.tmp-${process.pid}`;
    this.#o = o;
    this.#acts = new Map(o.names.map((n) => [n, new Float32Array(o.shardRows * o.d)]));
    this.#tokens = new BigInt64Array(o.shardRows);
    this.#doc = new Int32Array(o.shardRows);
    this.#pos = new Int32Array(o.shardRows);
  }

  static async create(dir: string, opts: StoreWriterOptions): Promise<ActivationStoreWriter> {
    const o: Required<StoreWriterOptions> = { dtype: "fp32", overwrite: false, ...opts };
    if (!Number.isInteger(o.shardRows) || o.shardRows < 1) {
      throw new RangeError(`Expected an integer >= 1 for shardRows but received ${opts.shardRows}`);
    }
    if (!Number.isInteger(o.d) || o.d < 1) throw new RangeError(`Expected an integer >= 1 for d but received ${opts.d}`);
    if (!(o.dtype in STORE_TO_ST)) throw new RangeError(`Expected fp32, bf16 or fp16 for dtype but received ${o.dtype}`);
    if (o.names.length === 0 || new Set(o.names).size !== o.names.length) {
      throw new RangeError("an activation store needs at least one activation name, each once");
    }
    const w = new ActivationStoreWriter(dir, o);
    if (existsSync(w.dir) && !o.overwrite) throw new InputError(`${w.dir}: already exists (pass overwrite to replace it)`);
    if (!existsSync(dirname(w.dir))) throw new InputError(`${dirname(w.dir)}: no such folder`);
    await rm(w.tmp, { recursive: true, force: true });
    await mkdir(w.tmp);
    return w;
  }

  /** Rows written so far (flushed or buffered). */
  get rows(): number {
    return this.#rows;
  }

  /**
   * Appends n rows: `acts[name]` holds n×D fp32 values per activation name (e.g. a subarray of a
   * capture), with each row's token id, prompt index and position. Shards are written as they fill.
   */
  async appendRows(
    acts: Record<string, Float32Array>,
    tokens: ArrayLike<number | bigint>,
    doc: ArrayLike<number>,
    pos: ArrayLike<number>,
  ): Promise<void> {
    if (this.#closed) throw new Error(`${this.dir}: the store writer was already finished or aborted`);
    const d = this.#o.d;
    const n = tokens.length;
    if (doc.length !== n || pos.length !== n) throw new RangeError(`appendRows: ${n} tokens but ${doc.length} doc and ${pos.length} pos values`);
    for (const name of this.#acts.keys()) {
      const src = acts[name];
      if (!src || src.length !== n * d) throw new RangeError(`${name}: expected ${n}×${d} values, got ${src ? src.length : "none"}`);
    }
    let i = 0;
    while (i < n) {
      const take = Math.min(n - i, this.#o.shardRows - this.#fill);
      const r = this.#fill;
      for (const [name, buf] of this.#acts) buf.set(acts[name].subarray(i * d, (i + take) * d), r * d);
      for (let j = 0; j < take; j++) {
        this.#tokens[r + j] = BigInt(tokens[i + j]);
        this.#doc[r + j] = doc[i + j];
        this.#pos[r + j] = pos[i + j];
      }
      this.#fill += take;
      this.#rows += take;
      i += take;
      if (this.#fill === this.#o.shardRows) await this.#flush();
    }
  }

  async #flush(): Promise<void> {
    const n = this.#fill;
    if (n === 0) return;
    const d = this.#o.d;
    const file = `shard-${String(this.#shards.length).padStart(5, "0")}.safetensors`;
    const tensors: Record<string, Tensor> = {};
    const temps: Tensor[] = [];
    try {
      for (const [name, buf] of this.#acts) {
        const f = Tensor.from(buf.subarray(0, n * d), [n, d]);
        temps.push(f);
        tensors[name] = this.#o.dtype === "fp32" ? f : f.to(this.#o.dtype);
        if (tensors[name] !== f) temps.push(tensors[name]);
      }
      for (const [name, arr] of [
        ["tokens", this.#tokens.subarray(0, n)],
        ["doc", this.#doc.subarray(0, n)],
        ["pos", this.#pos.subarray(0, n)],
      ] as const) {
        tensors[name] = Tensor.from(arr);
        temps.push(tensors[name]);
      }
      await saveSafetensors(join(this.tmp, file), tensors, { format: "qsae-activations" });
    } finally {
      for (const t of temps) t.dispose();
    }
    this.#shards.push({ file, rows: n });
    this.#fill = 0;
  }

  /**
   * Flushes the last shard, writes manifest.json (the given fields plus dtype, d_model, n_tokens,
   * shards) and renames the folder into place.
   */
  async finish(fields: Omit<ActivationManifest, "dtype" | "d_model" | "n_tokens" | "shards" | "format" | "version">): Promise<ActivationManifest> {
    if (this.#closed) throw new Error(`${this.dir}: the store writer was already finished or aborted`);
    try {
      await this.#flush();
      const manifest: ActivationManifest = {
        format: "qsae-activations",
        version: 1,
        ...fields,
        d_model: this.#o.d,
        dtype: this.#o.dtype,
        n_tokens: this.#rows,
        shards: this.#shards,
      };
      manifestSchema.parse(manifest);
      await writeFile(join(this.tmp, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
      if (existsSync(this.dir)) {
        if (!this.#o.overwrite) throw new InputError(`${this.dir}: already exists (pass overwrite to replace it)`);
        // Move the old store aside first so that DIR is never a mix of both.
        const old = `${this.dir}.old-${process.pid}`;
        await rename(this.dir, old);
        await rename(this.tmp, this.dir);
        await rm(old, { recursive: true, force: true });
      } else {
        await rename(this.tmp, this.dir);
      }
      this.#closed = true;
      return manifest;
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  /** Removes the temporary folder; nothing is left at DIR. Idempotent. */
  async abort(): Promise<void> {
    this.#closed = true;
    await rm(this.tmp, { recursive: true, force: true });
  }
}

export interface ShardInfo {
  /** Absolute path of the shard file. */
  file: string;
  rows: number;
  /** Index of the shard's first row in the whole store. */
  start: number;
}

/**
 * Reads an activation store folder, or a plain `.safetensors` file with `acts` [N, D] (and optional
 * `doc`, `tokens`, `pos`), which opens as a one-shard store whose single activation is named `acts`.
 */
export class ActivationStore {
  readonly path: string;
  readonly manifest: ActivationManifest;
  readonly shards: ShardInfo[];
  /** Activation tensor names present in every shard (`acts.<hook>.<layer>`, or `acts` for a plain file). */
  readonly names: string[];
  /** Whether the store is a plain .safetensors file rather than a folder. */
  readonly plain: boolean;

  private constructor(path: string, manifest: ActivationManifest, shards: ShardInfo[], names: string[], plain: boolean) {
    this.path = path;
    this.manifest = manifest;
    this.shards = shards;
    this.names = names;
    this.plain = plain;
  }

  static async open(path: string): Promise<ActivationStore> {
    const p = resolve(path);
    if (!existsSync(p)) throw new InputError(`${p}: no such activation store`);
    if (!statSync(p).isDirectory()) return ActivationStore.#openPlain(p);
    const mf = join(p, "manifest.json");
    if (!existsSync(mf)) throw new InputError(`${p}: not an activation store (no manifest.json)`);
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(mf, "utf8"));
    } catch (e) {
      throw new InputError(`${mf}: invalid JSON (${(e as Error).message})`);
    }
    const parsed = manifestSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new InputError(`${mf}: ${issue.path.join(".") || "(root)"}: ${issue.message}`);
    }
    const m = parsed.data;
    const names = m.hooks.flatMap((h) => m.layers.map((l) => actsName(h, l)));
    const shards: ShardInfo[] = [];
    let start = 0;
    for (const s of m.shards) {
      const file = join(p, s.file);
      if (basename(s.file) !== s.file) throw new InputError(`${mf}: shard name ${JSON.stringify(s.file)} must be a plain file name`);
      if (!existsSync(file)) throw new InputError(`${file}: missing (listed in manifest.json)`);
      const head = await inspectCheckpoint(file);
      const byName = new Map(head.tensors.map((t) => [t.name, t]));
      const expect: [string, string, number[]][] = [
        ...names.map((n) => [n, STORE_TO_ST[m.dtype], [s.rows, m.d_model]] as [string, string, number[]]),
        ["tokens", "I64", [s.rows]],
        ["doc", "I32", [s.rows]],
        ["pos", "I32", [s.rows]],
      ];
      for (const [name, dtype, shape] of expect) {
        const t = byName.get(name);
        if (!t) throw new InputError(`${file}: no tensor '${name}'`);
        if (t.dtype !== dtype || t.shape.join(",") !== shape.join(",")) {
          throw new InputError(`${file}: '${name}' is ${t.dtype} [${t.shape.join(", ")}], the manifest says ${dtype} [${shape.join(", ")}]`);
        }
      }
      shards.push({ file, rows: s.rows, start });
      start += s.rows;
    }
    if (start !== m.n_tokens) throw new InputError(`${mf}: shards hold ${start} rows but n_tokens is ${m.n_tokens}`);
    return new ActivationStore(p, m, shards, names, false);
  }

  static async #openPlain(file: string): Promise<ActivationStore> {
    const head = await inspectCheckpoint(file).catch((e: Error) => {
      throw new InputError(e.message.includes(file) ? e.message : `${file}: ${e.message}`);
    });
    const byName = new Map(head.tensors.map((t) => [t.name, t]));
    const acts = byName.get("acts");
    if (!acts || acts.shape.length !== 2) {
      throw new InputError(`${file}: a plain activation file needs a tensor 'acts' [N, D]${acts ? `, found [${acts.shape.join(", ")}]` : ""}`);
    }
    const dtype = ST_TO_STORE[acts.dtype];
    if (!dtype) throw new InputError(`${file}: 'acts' is ${acts.dtype}; expected F32, BF16 or F16`);
    const [n, d] = acts.shape;
    const want: Record<string, string> = { doc: "I32", tokens: "I64", pos: "I32" };
    for (const [k, dt] of Object.entries(want)) {
      const t = byName.get(k);
      if (t && (t.dtype !== dt || t.shape.join(",") !== String(n))) {
        throw new InputError(`${file}: '${k}' must be ${dt} [${n}], found ${t.dtype} [${t.shape.join(", ")}]`);
      }
    }
    const manifest: ActivationManifest = {
      format: "qsae-activations",
      version: 1,
      qsae_version: head.metadata.qsae_version ?? "",
      model: { path: "", architecture: "", config_hash: "", weights_hash: "" },
      precision: head.metadata.precision ?? "",
      compute_dtype: "",
      quantization: null,
      hooks: [],
      layers: [],
      d_model: d,
      dtype,
      n_tokens: n,
      n_prompts: 0,
      prompts_hash: "",
      skip_bos: false,
      shards: [{ file: basename(file), rows: n }],
    };
    return new ActivationStore(file, manifest, [{ file, rows: n, start: 0 }], ["acts"], true);
  }

  get nRows(): number {
    return this.manifest.n_tokens;
  }

  get dModel(): number {
    return this.manifest.d_model;
  }

  /** `acts.<hook>.<layer>`, checked against the store; with no arguments the only activation there is. */
  name(hook?: string, layer?: number): string {
    if (hook === undefined && layer === undefined) {
      if (this.names.length !== 1) {
        throw new RangeError(`${this.path}: holds ${this.names.length} activations (${this.names.join(", ")}); name a hook and layer`);
      }
      return this.names[0];
    }
    const hooks = this.manifest.hooks;
    const h = hook ?? (hooks.length === 1 ? hooks[0] : undefined);
    const l = layer ?? (this.manifest.layers.length === 1 ? this.manifest.layers[0] : undefined);
    if (h === undefined || l === undefined) throw new RangeError(`${this.path}: name both a hook and a layer`);
    const n = actsName(h, l);
    if (!this.names.includes(n)) throw new RangeError(`${this.path}: no activations ${n} (the store has ${this.names.join(", ")})`);
    return n;
  }

  /** The tensors of shard `i` (memory-mapped; all of them, or `names`). */
  async readShard(i: number, names?: string[]): Promise<Record<string, Tensor>> {
    const s = this.shards[i];
    if (!s) throw new RangeError(`${this.path}: shard ${i} does not exist (the store has ${this.shards.length})`);
    return (await loadSafetensors(s.file, names)).tensors;
  }

  /**
   * All rows of one activation as one tensor [N, D] in the stored dtype (or `dtype`). For small stores:
   * refuses above `maxBytes` (default 2 GiB); stream big ones shard by shard with readShard().
   */
  async read(hook?: string, layer?: number, o: { dtype?: StoreDtype; maxBytes?: number } = {}): Promise<Tensor> {
    const name = this.name(hook, layer);
    const d = this.dModel;
    const stored = this.manifest.dtype;
    const bytes = this.nRows * d * (stored === "fp32" ? 4 : 2);
    const max = o.maxBytes ?? 2 ** 31;
    if (bytes > max) throw new RangeError(`${this.path}: ${name} is ${bytes} bytes, above maxBytes ${max}: read it shard by shard`);
    const parts = await this.#column(name);
    const data: AnyTypedArray = stored === "fp32" ? concat(parts, Float32Array) : concat(parts, Uint16Array);
    const t = Tensor.from(data, [this.nRows, d], stored);
    if (!o.dtype || o.dtype === stored) return t;
    try {
      return t.to(o.dtype);
    } finally {
      t.dispose();
    }
  }

  /** Token ids of all rows. */
  async tokens(): Promise<BigInt64Array> {
    return concat(await this.#column("tokens"), BigInt64Array);
  }

  /** Prompt index of all rows. */
  async docs(): Promise<Int32Array> {
    return concat(await this.#column("doc"), Int32Array);
  }

  /** Position within its prompt of all rows. */
  async positions(): Promise<Int32Array> {
    return concat(await this.#column("pos"), Int32Array);
  }

  async #column(name: string): Promise<AnyTypedArray[]> {
    const out: AnyTypedArray[] = [];
    for (let i = 0; i < this.shards.length; i++) {
      const t = (await this.readShard(i, [name]))[name];
      if (!t) throw new InputError(`${this.shards[i].file}: no tensor '${name}'`);
      try {
        out.push(t.toTypedArray());
      } finally {
        t.dispose();
      }
    }
    return out;
  }
}

type TypedCtor<A> = new (n: number) => A;

function concat<A extends AnyTypedArray>(parts: AnyTypedArray[], C: TypedCtor<A>): A {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new C(n) as A & { set(src: ArrayLike<unknown>, off: number): void };
  let off = 0;
  for (const p of parts) {
    if (!(p instanceof (C as unknown as new () => object))) {
      throw new TypeError(`expected ${C.name} data, got ${p.constructor.name}`);
    }
    out.set(p as unknown as ArrayLike<unknown>, off);
    off += p.length;
  }
  return out;
}

/** Names of the per-row columns every shard has besides the activations. */
export const STORE_COLUMNS = ["tokens", "doc", "pos"] as const;

export type { DTypeName };
