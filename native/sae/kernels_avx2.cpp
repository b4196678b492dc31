// AVX2/FMA inner loops of the fused SAE step, compiled with -mavx2 -mfma (native/sae/sources.cmake) and only
// called when qsae::cpu_has_avx2_fma() says the processor has them. Accumulators stay in registers across the
// gathered rows (64 columns at a time), so each output element is loaded and stored once per call instead of
// once per gathered row.
#include "sae/kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <climits>
#include <cmath>
#include <cstdint>

namespace qsae::sae::kern {

namespace {
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
}  // namespace

void gather_axpy_avx2(const float* rows, int64_t ld, const int32_t* idx, const float* a, int64_t cnt,
                      const float* base, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const float* src = base ? base + i : out + i;
    __m256 c0 = _mm256_loadu_ps(src), c1 = _mm256_loadu_ps(src + 8), c2 = _mm256_loadu_ps(src + 16),
           c3 = _mm256_loadu_ps(src + 24), c4 = _mm256_loadu_ps(src + 32), c5 = _mm256_loadu_ps(src + 40),
           c6 = _mm256_loadu_ps(src + 48), c7 = _mm256_loadu_ps(src + 56);
    for (int64_t t = 0; t < cnt; ++t) {
      const __m256 s = _mm256_set1_ps(a[t]);
      const float* r = rows + int64_t(idx[t]) * ld + i;
      c0 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r), c0);
      c1 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 8), c1);
      c2 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 16), c2);
      c3 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 24), c3);
      c4 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 32), c4);
      c5 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 40), c5);
      c6 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 48), c6);
      c7 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 56), c7);
    }
    float* o = out + i;
    _mm256_storeu_ps(o, c0), _mm256_storeu_ps(o + 8, c1), _mm256_storeu_ps(o + 16, c2);
    _mm256_storeu_ps(o + 24, c3), _mm256_storeu_ps(o + 32, c4), _mm256_storeu_ps(o + 40, c5);
    _mm256_storeu_ps(o + 48, c6), _mm256_storeu_ps(o + 56, c7);
  }
  for (; i + 8 <= n; i += 8) {
    __m256 c = _mm256_loadu_ps(base ? base + i : out + i);
    for (int64_t t = 0; t < cnt; ++t)
      c = _mm256_fmadd_ps(_mm256_set1_ps(a[t]), _mm256_loadu_ps(rows + int64_t(idx[t]) * ld + i), c);
    _mm256_storeu_ps(out + i, c);
  }
  for (; i < n; ++i) {
    float c = base ? base[i] : out[i];
    for (int64_t t = 0; t < cnt; ++t) c = std::fma(a[t], rows[int64_t(idx[t]) * ld + i], c);
    out[i] = c;
  }
}

void gather_dot_avx2(const float* x, const float* rows, int64_t ld, const int32_t* idx, int64_t cnt, float* out,
                     int64_t n) {
  const int64_t n8 = n / 8 * 8;
  int64_t t = 0;
  // Four rows at a time share each load of x.
  for (; t + 4 <= cnt; t += 4) {
    const float* r0 = rows + int64_t(idx[t]) * ld;
    const float* r1 = rows + int64_t(idx[t + 1]) * ld;
    const float* r2 = rows + int64_t(idx[t + 2]) * ld;
    const float* r3 = rows + int64_t(idx[t + 3]) * ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n8; i += 8) {
      const __m256 xv = _mm256_loadu_ps(x + i);
      a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r0 + i), a0);
      a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r1 + i), a1);
      a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r2 + i), a2);
      a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r3 + i), a3);
    }
    float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
    for (int64_t i = n8; i < n; ++i) {
      s0 += x[i] * r0[i];
      s1 += x[i] * r1[i];
      s2 += x[i] * r2[i];
      s3 += x[i] * r3[i];
    }
    out[t] = s0, out[t + 1] = s1, out[t + 2] = s2, out[t + 3] = s3;
  }
  for (; t < cnt; ++t) {
    const float* r = rows + int64_t(idx[t]) * ld;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n8; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(r + i), acc);
    float s = hsum(acc);
    for (int64_t i = n8; i < n; ++i) s += x[i] * r[i];
    out[t] = s;
  }
}

double residual_avx2(float* r, const float* bias, const float* x, float scale, int64_t n) {
  const __m256 vs = _mm256_set1_ps(scale);
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 e = _mm256_loadu_ps(r + i);
    if (bias) e = _mm256_add_ps(e, _mm256_loadu_ps(bias + i));
    e = _mm256_sub_ps(e, _mm256_loadu_ps(x + i));
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(e)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
    s0 = _mm256_fmadd_pd(lo, lo, s0);
    s1 = _mm256_fmadd_pd(hi, hi, s1);
    _mm256_storeu_ps(r + i, _mm256_mul_ps(e, vs));
  }
  const __m256d s = _mm256_add_pd(s0, s1);
  __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  double sq = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  if (i < n) sq += residual_generic(r + i, bias ? bias + i : nullptr, x + i, scale, n - i);
  return sq;
}

void top_k_avx2(const float* row, int64_t n, int64_t k, int32_t* keys, int32_t* out) {
  const int64_t n8 = n / 8 * 8;
  const __m256i m31 = _mm256_set1_epi32(0x7fffffff);
  __m256i vlo = _mm256_set1_epi32(INT32_MAX), vhi = _mm256_set1_epi32(INT32_MIN);
  for (int64_t j = 0; j < n8; j += 8) {
    const __m256i b = _mm256_castps_si256(_mm256_loadu_ps(row + j));
    const __m256i key = _mm256_xor_si256(b, _mm256_and_si256(_mm256_srai_epi32(b, 31), m31));
    _mm256_storeu_si256((__m256i*)(keys + j), key);
    vlo = _mm256_min_epi32(vlo, key);
    vhi = _mm256_max_epi32(vhi, key);
  }
  alignas(32) int32_t lo8[8], hi8[8];
  _mm256_store_si256((__m256i*)lo8, vlo);
  _mm256_store_si256((__m256i*)hi8, vhi);
  int32_t lo = INT32_MAX, hi = INT32_MIN;
  for (int q = 0; q < 8; ++q) lo = lo8[q] < lo ? lo8[q] : lo, hi = hi8[q] > hi ? hi8[q] : hi;
  for (int64_t j = n8; j < n; ++j) {
    int32_t b;
    __builtin_memcpy(&b, row + j, 4);
    keys[j] = b >= 0 ? b : b ^ 0x7fffffff;
    lo = keys[j] < lo ? keys[j] : lo;
    hi = keys[j] > hi ? keys[j] : hi;
  }
  // count(key >= t) = n - count(t > key)
  auto count_ge = [&](int32_t t) {
    const __m256i vt = _mm256_set1_epi32(t);
    __m256i acc = _mm256_setzero_si256();
    for (int64_t j = 0; j < n8; j += 8)
      acc = _mm256_add_epi32(acc, _mm256_cmpgt_epi32(vt, _mm256_loadu_si256((const __m256i*)(keys + j))));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    int64_t less = -int64_t(_mm_cvtsi128_si32(s4));
    for (int64_t j = n8; j < n; ++j) less += t > keys[j];
    return n - less;
  };
  // the same bisection as top_k_generic, so both select the same entries
  int64_t c_lo = n;
  while (lo < hi && c_lo != k) {
    const int32_t mid = int32_t(lo + ((int64_t(hi) - lo + 1) >> 1));
    const int64_t c = count_ge(mid);
    if (c >= k) lo = mid, c_lo = c;
    else hi = mid - 1;
  }
  if (c_lo != k) return top_k_generic(row, n, k, keys, out);  // ties at the k-th value (rare)
  int64_t m = 0;
  const __m256i vt = _mm256_set1_epi32(lo);
  for (int64_t j = 0; j < n8; j += 8) {
    uint32_t bits = ~uint32_t(_mm256_movemask_ps(
                        _mm256_castsi256_ps(_mm256_cmpgt_epi32(vt, _mm256_loadu_si256((const __m256i*)(keys + j)))))) &
                    0xffu;
    while (bits) {
      out[m++] = int32_t(j + __builtin_ctz(bits));
      bits &= bits - 1;
    }
  }
  for (int64_t j = n8; j < n; ++j)
    if (keys[j] >= lo) out[m++] = int32_t(j);
}

int64_t count_relu_avx2(const float* pre, int64_t n, float lo) {
  const __m256 z = _mm256_setzero_ps(), vlo = _mm256_set1_ps(lo);
  int64_t c = 0, j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 p = _mm256_loadu_ps(pre + j);
    c += __builtin_popcount(
        _mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(p, z, _CMP_GT_OQ), _mm256_cmp_ps(p, vlo, _CMP_GE_OQ))));
  }
  return c + count_relu_generic(pre + j, n - j, lo);
}

int64_t count_jumprelu_avx2(const float* pre, const float* thr, int64_t n, float half, int64_t* window) {
  const __m256 vh = _mm256_set1_ps(half), abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  int64_t c = 0, w = 0, j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 p = _mm256_loadu_ps(pre + j), t = _mm256_loadu_ps(thr + j);
    const __m256 on = _mm256_cmp_ps(p, t, _CMP_GT_OQ);
    const __m256 in = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(p, t), abs_mask), vh, _CMP_LT_OQ);
    c += __builtin_popcount(_mm256_movemask_ps(on));
    w += __builtin_popcount(_mm256_movemask_ps(_mm256_andnot_ps(on, in)));
  }
  int64_t wt = 0;
  c += count_jumprelu_generic(pre + j, thr + j, n - j, half, &wt);
  *window = w + wt;
  return c;
}

void relu_backward_avx2(float* g, const float* f, const float* l1w, int64_t n) {
  const __m256 z = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 on = _mm256_cmp_ps(_mm256_loadu_ps(f + j), z, _CMP_GT_OQ);
    _mm256_storeu_ps(g + j, _mm256_and_ps(on, _mm256_add_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(l1w + j))));
  }
  relu_backward_generic(g + j, f + j, l1w + j, n - j);
}

void adam_avx2(float* p, const float* g, float* m, float* v, int64_t n, float b1, float b2, float step_size,
               float inv_sqrt_bc2, float eps) {
  const __m256 vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2), vc1 = _mm256_set1_ps(1 - b1),
               vc2 = _mm256_set1_ps(1 - b2), vss = _mm256_set1_ps(step_size), vib = _mm256_set1_ps(inv_sqrt_bc2),
               ve = _mm256_set1_ps(eps);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(vc1, gi));
    const __m256 vi =
        _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(vc2, gi), gi));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    const __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), vib), ve);
    _mm256_storeu_ps(p + i, _mm256_sub_ps(_mm256_loadu_ps(p + i), _mm256_div_ps(_mm256_mul_ps(vss, mi), den)));
  }
  if (i < n) adam_generic(p + i, g + i, m + i, v + i, n - i, b1, b2, step_size, inv_sqrt_bc2, eps);
}

}  // namespace qsae::sae::kern

#else  // not built for AVX2: the portable loops (cpu_has_avx2_fma() is false on such machines anyway)
namespace qsae::sae::kern {
void gather_axpy_avx2(const float* rows, int64_t ld, const int32_t* idx, const float* a, int64_t cnt,
                      const float* base, float* out, int64_t n) {
  gather_axpy_generic(rows, ld, idx, a, cnt, base, out, n);
}
void gather_dot_avx2(const float* x, const float* rows, int64_t ld, const int32_t* idx, int64_t cnt, float* out,
                     int64_t n) {
  gather_dot_generic(x, rows, ld, idx, cnt, out, n);
}
double residual_avx2(float* r, const float* bias, const float* x, float scale, int64_t n) {
  return residual_generic(r, bias, x, scale, n);
}
void top_k_avx2(const float* row, int64_t n, int64_t k, int32_t* scratch, int32_t* out) {
  top_k_generic(row, n, k, scratch, out);
}
int64_t count_relu_avx2(const float* pre, int64_t n, float lo) { return count_relu_generic(pre, n, lo); }
int64_t count_jumprelu_avx2(const float* pre, const float* thr, int64_t n, float half, int64_t* window) {
  return count_jumprelu_generic(pre, thr, n, half, window);
}
void relu_backward_avx2(float* g, const float* f, const float* l1w, int64_t n) { relu_backward_generic(g, f, l1w, n); }
void adam_avx2(float* p, const float* g, float* m, float* v, int64_t n, float b1, float b2, float step_size,
               float inv_sqrt_bc2, float eps) {
  adam_generic(p, g, m, v, n, b1, b2, step_size, inv_sqrt_bc2, eps);
}
}  // namespace qsae::sae::kern
#endif
