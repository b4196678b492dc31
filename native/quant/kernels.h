// CPU inner loops of the quantized linear layers, on raw pointers (no torch headers), so that the AVX2/FMA
// variant can be compiled with -mavx2 -mfma alone and selected at run time (qsae::cpu_has_avx2_fma()).
// Threading happens in linear.cpp (at::parallel_for over output rows); each call handles rows [n0, n1).
#pragma once
#include <cstdint>

namespace qsae::quant::kern {

// A 4-bit weight W [N, K] in bitsandbytes layout: codes of the row-major flatten, two per byte (first element
// in the high nibble), one fp32 absmax per `blocksize` consecutive elements of the flatten.
struct Q4View {
  const uint8_t* packed = nullptr;
  const float* absmax = nullptr;
  const float* table = nullptr;  // 16 code values
  int64_t N = 0, K = 0, blocksize = 64;
  // The fast paths need every row to start on a block boundary.
  bool rows_aligned() const { return K % blocksize == 0; }
};

// y[n] = sum_k W[n,k] * x[k] for n in [n0, n1)   (fp32 accumulation)
void gemv4_generic(const Q4View& w, const float* x, float* y, int64_t n0, int64_t n1);
void gemv4_avx2(const Q4View& w, const float* x, float* y, int64_t n0, int64_t n1);
// out[(n - n0) * K + k] = W[n, k] for n in [n0, n1)
void dequant4_rows_generic(const Q4View& w, float* out, int64_t n0, int64_t n1);
void dequant4_rows_avx2(const Q4View& w, float* out, int64_t n0, int64_t n1);

// int8: out[m * ldo + n] = sum_k xq[m * K + k] * W[n * K + k] (int32) for m in [0, M), n in [n0, n1).
void gemm8_generic(const int8_t* W, const int8_t* xq, int64_t M, int64_t K, int32_t* out, int64_t ldo,
                   int64_t n0, int64_t n1);
void gemm8_avx2(const int8_t* W, const int8_t* xq, int64_t M, int64_t K, int32_t* out, int64_t ldo,
                int64_t n0, int64_t n1);

}  // namespace qsae::quant::kern
