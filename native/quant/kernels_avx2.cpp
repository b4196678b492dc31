// AVX2/FMA inner loops, compiled with -mavx2 -mfma (native/quant/sources.cmake) and only called when
// qsae::cpu_has_avx2_fma() says the processor has them. Row layouts that do not start on a block boundary
// fall back to the portable loops.
#include "quant/kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace qsae::quant::kern {

namespace {

struct Decoder {
  __m256 tlo, thi;
  __m256i shifts, mask15;
  explicit Decoder(const float* table)
      : tlo(_mm256_loadu_ps(table)),
        thi(_mm256_loadu_ps(table + 8)),
        // 4 bytes b0..b3 (little endian in a 32-bit lane) -> codes b0>>4, b0&15, b1>>4, b1&15, ...
        shifts(_mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24)),
        mask15(_mm256_set1_epi32(15)) {}
  inline __m256 decode8(uint32_t four) const {
    const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)four), shifts), mask15);
    const __m256 lo = _mm256_permutevar8x32_ps(tlo, idx);
    const __m256 hi = _mm256_permutevar8x32_ps(thi, idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
};

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

}  // namespace

void gemv4_avx2(const Q4View& w, const float* x, float* y, int64_t n0, int64_t n1) {
  if (!w.rows_aligned() || w.blocksize % 16 != 0) return gemv4_generic(w, x, y, n0, n1);
  const Decoder d(w.table);
  const int64_t K = w.K, bs = w.blocksize, nbr = K / bs;
  // Two rows at a time: four independent FMA chains, x loaded once per pair.
  int64_t n = n0;
  for (; n + 2 <= n1; n += 2) {
    const uint8_t* p0 = w.packed + n * K / 2;
    const uint8_t* p1 = p0 + K / 2;
    const float* a0 = w.absmax + n * nbr;
    const float* a1 = a0 + nbr;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t b = 0; b < nbr; ++b) {
      __m256 s00 = _mm256_setzero_ps(), s01 = _mm256_setzero_ps();
      __m256 s10 = _mm256_setzero_ps(), s11 = _mm256_setzero_ps();
      const float* xb = x + b * bs;
      const uint8_t* q0 = p0 + b * bs / 2;
      const uint8_t* q1 = p1 + b * bs / 2;
      for (int64_t j = 0; j < bs; j += 16) {
        const __m256 x0 = _mm256_loadu_ps(xb + j), x1 = _mm256_loadu_ps(xb + j + 8);
        s00 = _mm256_fmadd_ps(d.decode8(load_u32(q0 + j / 2)), x0, s00);
        s01 = _mm256_fmadd_ps(d.decode8(load_u32(q0 + j / 2 + 4)), x1, s01);
        s10 = _mm256_fmadd_ps(d.decode8(load_u32(q1 + j / 2)), x0, s10);
        s11 = _mm256_fmadd_ps(d.decode8(load_u32(q1 + j / 2 + 4)), x1, s11);
      }
      acc0 = _mm256_fmadd_ps(_mm256_add_ps(s00, s01), _mm256_set1_ps(a0[b]), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_add_ps(s10, s11), _mm256_set1_ps(a1[b]), acc1);
    }
    y[n] = hsum(acc0);
    y[n + 1] = hsum(acc1);
  }
  for (; n < n1; ++n) {
    const uint8_t* p0 = w.packed + n * K / 2;
    const float* a0 = w.absmax + n * nbr;
    __m256 acc0 = _mm256_setzero_ps();
    for (int64_t b = 0; b < nbr; ++b) {
      __m256 s00 = _mm256_setzero_ps(), s01 = _mm256_setzero_ps();
      const float* xb = x + b * bs;
      const uint8_t* q0 = p0 + b * bs / 2;
      for (int64_t j = 0; j < bs; j += 16) {
        s00 = _mm256_fmadd_ps(d.decode8(load_u32(q0 + j / 2)), _mm256_loadu_ps(xb + j), s00);
        s01 = _mm256_fmadd_ps(d.decode8(load_u32(q0 + j / 2 + 4)), _mm256_loadu_ps(xb + j + 8), s01);
      }
      acc0 = _mm256_fmadd_ps(_mm256_add_ps(s00, s01), _mm256_set1_ps(a0[b]), acc0);
    }
    y[n] = hsum(acc0);
  }
}

void dequant4_rows_avx2(const Q4View& w, float* out, int64_t n0, int64_t n1) {
  if (!w.rows_aligned() || w.blocksize % 16 != 0) return dequant4_rows_generic(w, out, n0, n1);
  const Decoder d(w.table);
  const int64_t K = w.K, bs = w.blocksize, nbr = K / bs;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* p = w.packed + n * K / 2;
    const float* a = w.absmax + n * nbr;
    float* o = out + (n - n0) * K;
    for (int64_t b = 0; b < nbr; ++b) {
      const __m256 s = _mm256_set1_ps(a[b]);
      const uint8_t* q = p + b * bs / 2;
      float* ob = o + b * bs;
      for (int64_t j = 0; j < bs; j += 8) _mm256_storeu_ps(ob + j, _mm256_mul_ps(d.decode8(load_u32(q + j / 2)), s));
    }
  }
}

void gemm8_avx2(const int8_t* W, const int8_t* xq, int64_t M, int64_t K, int32_t* out, int64_t ldo, int64_t n0,
                int64_t n1) {
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t K32 = K / 32 * 32;
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* wr = W + n * K;
    for (int64_t m = 0; m < M; ++m) {
      const int8_t* xr = xq + m * K;
      __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
      int64_t k = 0;
      for (; k + 64 <= K32; k += 64) {
        const __m256i a0 = _mm256_loadu_si256((const __m256i*)(xr + k));
        const __m256i w0 = _mm256_loadu_si256((const __m256i*)(wr + k));
        const __m256i a1 = _mm256_loadu_si256((const __m256i*)(xr + k + 32));
        const __m256i w1 = _mm256_loadu_si256((const __m256i*)(wr + k + 32));
        // |a| (unsigned) x sign(a)*w (signed): exact, since |values| <= 127 keeps pair sums below 2^15.
        acc0 = _mm256_add_epi32(
            acc0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(a0, a0), _mm256_sign_epi8(w0, a0)), ones));
        acc1 = _mm256_add_epi32(
            acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(a1, a1), _mm256_sign_epi8(w1, a1)), ones));
      }
      for (; k < K32; k += 32) {
        const __m256i a0 = _mm256_loadu_si256((const __m256i*)(xr + k));
        const __m256i w0 = _mm256_loadu_si256((const __m256i*)(wr + k));
        acc0 = _mm256_add_epi32(
            acc0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(a0, a0), _mm256_sign_epi8(w0, a0)), ones));
      }
      const __m256i acc = _mm256_add_epi32(acc0, acc1);
      __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
      int32_t r = _mm_cvtsi128_si32(s);
      for (; k < K; ++k) r += int32_t(xr[k]) * int32_t(wr[k]);
      out[m * ldo + n] = r;
    }
  }
}

}  // namespace qsae::quant::kern

#else  // not built for AVX2: the portable loops (cpu_has_avx2_fma() is false on such machines anyway)
namespace qsae::quant::kern {
void gemv4_avx2(const Q4View& w, const float* x, float* y, int64_t n0, int64_t n1) { gemv4_generic(w, x, y, n0, n1); }
void dequant4_rows_avx2(const Q4View& w, float* out, int64_t n0, int64_t n1) { dequant4_rows_generic(w, out, n0, n1); }
void gemm8_avx2(const int8_t* W, const int8_t* xq, int64_t M, int64_t K, int32_t* out, int64_t ldo, int64_t n0,
                int64_t n1) {
  gemm8_generic(W, xq, M, K, out, ldo, n0, n1);
}
}  // namespace qsae::quant::kern
#endif
