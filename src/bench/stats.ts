// Statistics of the benchmarks: the unbiased pass@k estimator, Wilson and bootstrap 95% intervals,
// and McNemar's exact test for paired pass/fail outcomes.

/**
 * Unbiased pass@k for one task with n samples of which c passed: 1 - C(n-c, k) / C(n, k), computed as a
 * product (numerically stable, as in the HumanEval paper); 1 when n - c < k.
 */
export function passAtK(n: number, c: number, k: number): number {
  if (k > n) throw new RangeError(`pass@${k} needs at least ${k} samples per task, but a task has ${n}`);
  if (n - c < k) return 1;
  let prod = 1;
  for (let i = n - c + 1; i <= n; i++) prod *= 1 - k / i;
  return 1 - prod;
}

const Z95 = 1.959963984540054;

/** Wilson score interval (95%) for `successes` out of `n` Bernoulli trials. */
export function wilsonInterval(successes: number, n: number): [number, number] {
  if (n === 0) return [0, 1];
  const p = successes / n;
  const z2 = Z95 * Z95;
  const denom = 1 + z2 / n;
  const center = (p + z2 / (2 * n)) / denom;
  const half = (Z95 * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  return [Math.max(0, center - half), Math.min(1, center + half)];
}

/** Percentile bootstrap (95%) of the mean of per-item values, with a fixed-seed generator. */
export function bootstrapInterval(values: number[], resamples = 2000, seed = 1234): [number, number] {
  const n = values.length;
  if (n === 0) return [0, 1];
  let s = seed >>> 0 || 1;
  const rand = () => {
    // xorshift32: fast, deterministic
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
  const means = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += values[Math.floor(rand() * n)];
    means[r] = sum / n;
  }
  means.sort();
  const at = (q: number) => means[Math.min(resamples - 1, Math.max(0, Math.round(q * (resamples - 1))))];
  return [at(0.025), at(0.975)];
}

function logChoose(n: number, k: number): number {
  return logGamma(n + 1) - logGamma(k + 1) - logGamma(n - k + 1);
}

// Lanczos approximation (g = 7, n = 9); relative error ~1e-15 for positive arguments.
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];
function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let a = LANCZOS[0];
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i] / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/**
 * McNemar's exact test: two-sided p-value for b discordant pairs one way and c the other, i.e. the
 * binomial test of min(b, c) successes in b + c trials with p = 1/2 (doubled tail, capped at 1).
 * Exact sums of binomial terms for b + c <= 1000; log-space terms beyond.
 */
export function mcnemarExact(b: number, c: number): number {
  const n = b + c;
  if (n === 0) return 1;
  const m = Math.min(b, c);
  if (2 * m === n) return 1;
  let tail = 0;
  const log2n = n * Math.LN2;
  if (n <= 1000) {
    // C(n, i) / 2^n built up term by term from C(n, 0) / 2^n in log space for the start only.
    let term = Math.exp(-log2n);
    if (term > 0) {
      for (let i = 0; i <= m; i++) {
        tail += term;
        term *= (n - i) / (i + 1);
      }
      return Math.min(1, 2 * tail);
    }
  }
  for (let i = 0; i <= m; i++) tail += Math.exp(logChoose(n, i) - log2n);
  return Math.min(1, 2 * tail);
}
