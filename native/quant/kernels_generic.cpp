// Portable inner loops (reference for the AVX2 ones, and the path for any layout: rows need not start on a
// block boundary here).
#include <algorithm>

#include "quant/kernels.h"

namespace qsae::quant::kern {

namespace {
inline int code_at(const uint8_t* packed, int64_t i) {
  const uint8_t b = packed[i >> 1];
  return (i & 1) ? (b & 15) : (b >> 4);
}
}  // namespace

void gemv4_generic(const Q4View& w, const float* x, float* y, int64_t n0, int64_t n1) {
  const int64_t K = w.K, bs = w.blocksize;
  for (int64_t n = n0; n < n1; ++n) {
    const int64_t base = n * K;
    float acc = 0;
    int64_t k = 0;
    while (k < K) {
      const int64_t i = base + k, b = i / bs;
      const int64_t end = std::min(K, k + (b + 1) * bs - i);  // end of this block inside the row
      float part = 0;
      for (; k < end; ++k) part += w.table[code_at(w.packed, base + k)] * x[k];
      acc += part * w.absmax[b];
    }
    y[n] = acc;
  }
}

void dequant4_rows_generic(const Q4View& w, float* out, int64_t n0, int64_t n1) {
  const int64_t K = w.K, bs = w.blocksize;
  for (int64_t n = n0; n < n1; ++n) {
    float* o = out + (n - n0) * K;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t i = n * K + k;
      o[k] = w.table[code_at(w.packed, i)] * w.absmax[i / bs];
    }
  }
}

void gemm8_generic(const int8_t* W, const int8_t* xq, int64_t M, int64_t K, int32_t* out, int64_t ldo, int64_t n0,
                   int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* wr = W + n * K;
    for (int64_t m = 0; m < M; ++m) {
      const int8_t* xr = xq + m * K;
      int32_t acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += int32_t(xr[k]) * int32_t(wr[k]);
      out[m * ldo + n] = acc;
    }
  }
}

}  // namespace qsae::quant::kern
