// Next-token choice on last-position logits: greedy, or sampling with temperature, top-k and top-p
// (transformers' order and semantics) from a seeded generator, so a seed gives the same text every run.

/** A seeded uniform [0, 1) generator: xoshiro128** seeded through splitmix32. */
export class Rng {
  #s = new Uint32Array(4);

  /** `seed` and `stream` (e.g. the prompt's index) pick independent sequences. */
  constructor(seed: number, stream = 0) {
    let x = (Math.floor(seed) ^ Math.imul(stream + 1, 0x9e3779b9)) >>> 0;
    // Mix in the high bits of seeds above 2^32 too.
    x = (x ^ Math.floor(seed / 4294967296)) >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.#s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1;
  }

  /** Next 32 random bits. */
  nextU32(): number {
    const s = this.#s;
    const r = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export interface SamplingOptions {
  /** 0 (default) = greedy; otherwise logits are divided by it before the softmax. */
  temperature?: number;
  /** Nucleus: keep the most likely tokens until their probability reaches topP (1 = off). */
  topP?: number;
  /** Keep only the k most likely tokens (0 = off). Applied before top-p, as transformers does. */
  topK?: number;
}

/** Index of the largest value in `x[offset, offset+n)` (the first one on ties, as torch.argmax). */
export function argmax(x: ArrayLike<number>, offset = 0, n = x.length - offset): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = x[offset + i];
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

/** Checks sampling options, naming the bad one. */
export function checkSamplingOptions(o: SamplingOptions): void {
  const t = o.temperature ?? 0;
  if (!(t >= 0) || !Number.isFinite(t)) throw new RangeError(`Expected a number >= 0 for temperature but received ${o.temperature}`);
  const p = o.topP ?? 1;
  if (!(p > 0 && p <= 1)) throw new RangeError(`Expected a number in (0, 1] for topP but received ${o.topP}`);
  const k = o.topK ?? 0;
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`Expected an integer >= 0 for topK but received ${o.topK}`);
}

/** exp((logits - max) / temperature) into a scratch buffer, and their sum. */
function weights(logits: ArrayLike<number>, temperature: number, offset: number, n: number): { p: Float64Array; sum: number } {
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = logits[offset + i];
    if (v > max || Number.isNaN(v)) max = v;
  }
  if (max === -Infinity) throw new RangeError("all logits are -Infinity: nothing to sample");
  if (!Number.isFinite(max)) throw new RangeError("the logits hold NaN or +Infinity");
  const p = scratch(n);
  const inv = 1 / temperature;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    // Weights below e^-50 (2e-22) change no probability at double precision: skip their exp.
    const z = (logits[offset + i] - max) * inv;
    const e = z < -50 ? 0 : Math.exp(z);
    p[i] = e;
    sum += e;
  }
  return { p, sum };
}

/**
 * The candidate set and its probabilities after temperature, top-k and top-p, most likely first
 * (exposed for tests; `sampleToken` draws from it). Probabilities are renormalized to sum to 1.
 */
export function samplingDistribution(
  logits: ArrayLike<number>,
  o: SamplingOptions,
  offset = 0,
  n = logits.length - offset,
): { ids: number[]; probs: number[] } {
  const temperature = o.temperature ?? 0;
  const topP = o.topP ?? 1;
  const topK = Math.min(o.topK ?? 0, n);
  if (temperature === 0) return { ids: [argmax(logits, offset, n)], probs: [1] };
  const { p, sum } = weights(logits, temperature, offset, n);
  // Most tokens of a large vocabulary are far too unlikely to matter: collect those above a threshold
  // (relative to the top token, whose weight is 1) and lower it only while the collected ones might
  // not hold the whole top-k set, or the nucleus. Candidates are always a prefix of the sorted order.
  const filtered = topK > 0 || topP < 1;
  let thr = filtered ? 1e-4 : 0;
  let cand: number[];
  for (;;) {
    cand = [];
    let m = 0;
    for (let i = 0; i < n; i++) {
      if (p[i] >= thr) {
        cand.push(i);
        m += p[i];
      }
    }
    if (thr === 0) break;
    if (topK > 0 ? cand.length >= topK : m >= topP * sum) break;
    if (topK > 0) {
      // Fewer than k tokens above the threshold: the k-th largest weight is the exact one.
      thr = kthLargest(p, n, topK);
      continue;
    }
    thr = thr > 1e-30 ? thr * 1e-6 : 0;
  }
  cand.sort((a, b) => p[b] - p[a] || a - b);
  if (topK > 0 && cand.length > topK) cand.length = topK;
  let kSum = 0;
  for (const i of cand) kSum += p[i];
  const ids: number[] = [];
  const probs: number[] = [];
  let cum = 0;
  for (const i of cand) {
    if (ids.length > 0 && cum >= topP * kSum) break; // keep a token while the mass before it is < topP
    ids.push(i);
    probs.push(p[i]);
    cum += p[i];
  }
  for (let j = 0; j < probs.length; j++) probs[j] /= cum;
  return { ids, probs };
}

/** Picks the next token from `logits[offset, offset+n)`: greedy at temperature 0, else a seeded draw. */
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, rng: Rng | null, offset = 0, n?: number): number {
  const len = n ?? logits.length - offset;
  const temperature = o.temperature ?? 0;
  if (temperature === 0) return argmax(logits, offset, len);
  if (!rng) throw new TypeError("sampling needs a random generator");
  const u = rng.next();
  if ((o.topK ?? 0) === 0 && (o.topP ?? 1) >= 1) {
    // Plain softmax sampling: walk the weights in vocabulary order, no sort needed.
    const { p, sum } = weights(logits, temperature, offset, len);
    const target = u * sum;
    let c = 0;
    let last = 0;
    for (let i = 0; i < len; i++) {
      if (p[i] === 0) continue;
      c += p[i];
      last = i;
      if (target < c) return i;
    }
    return last;
  }
  const { ids, probs } = samplingDistribution(logits, o, offset, len);
  let c = 0;
  for (let j = 0; j < ids.length; j++) {
    c += probs[j];
    if (u < c) return ids[j];
  }
  return ids[ids.length - 1];
}

/** The k-th largest of x[0, n): one pass with a size-k min-heap (most values lose at the root). */
function kthLargest(x: Float64Array, n: number, k: number): number {
  const h = new Float64Array(k);
  let size = 0;
  for (let i = 0; i < n; i++) {
    const v = x[i];
    if (size < k) {
      let j = size++;
      while (j > 0) {
        const parent = (j - 1) >> 1;
        if (h[parent] <= v) break;
        h[j] = h[parent];
        j = parent;
      }
      h[j] = v;
    } else if (v > h[0]) {
      let j = 0;
      for (;;) {
        const l = 2 * j + 1;
        if (l >= k) break;
        const c = l + 1 < k && h[l + 1] < h[l] ? l + 1 : l;
        if (h[c] >= v) break;
        h[j] = h[c];
        j = c;
      }
      h[j] = v;
    }
  }
  return h[0];
}

let buf = new Float64Array(0);
function scratch(n: number): Float64Array {
  if (buf.length < n) buf = new Float64Array(n);
  return buf;
}
