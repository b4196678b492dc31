// The CUDA side of native/quant: launchers of the kernels in quant_kernels.cu (raw pointers + stream, no torch
// headers), and the at::Tensor glue in quant_cuda.cpp (compiled only when torch has CUDA).
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#include <cuda_runtime.h>
#else
typedef struct CUstream_st* cudaStream_t;
#endif

namespace qsae::quant::cuda {

// table16: a HOST pointer to the 16 code values (passed to the kernels by value).
// out[i] = table[code_i] * absmax[i / blocksize] for i < n, written as fp32 (out_kind 0), bf16 (1) or fp16 (2).
void launch_dequant4(const uint8_t* packed, const float* absmax, const float* table16, int64_t n, int64_t blocksize,
                     void* out, int out_kind, cudaStream_t stream);
// y[m, n] = sum_k x[m, k] * W[n, k] for a 4-bit W [N, K] with K % blocksize == 0 and K % 32 == 0, M in 1..16.
// x fp32 [M, K] (contiguous), y fp32 [M, N]. Each packed byte is read once (16-byte loads), code table in
// registers, fp32 accumulation, one warp per output row.
void launch_gemv4(const uint8_t* packed, const float* absmax, const float* table16, const float* x, float* y,
                  int64_t M, int64_t N, int64_t K, int64_t blocksize, cudaStream_t stream);
// Whether launch_gemv4 handles this layout (K % 32 == 0, K % blocksize == 0, 16-byte aligned rows, M <= 16).
bool gemv4_supported(int64_t M, int64_t K, int64_t blocksize);
// LLM.int8 pieces. Row-wise activation quantization: xq[m,k] = round(x*127/rowmax) with the columns flagged in
// col_is_outlier zeroed; rowmax over |x| < threshold (all when threshold <= 0). x fp32 [M, K].
void launch_quant_rows_int8(const float* x, const uint8_t* col_is_outlier, int8_t* xq, float* row_scale, int64_t M,
                            int64_t K, float threshold, cudaStream_t stream);
// Flags columns with any |x| >= threshold (col_is_outlier zero-initialized by the caller).
void launch_find_outliers(const float* x, uint8_t* col_is_outlier, int64_t M, int64_t K, float threshold,
                          cudaStream_t stream);
// y[m, n] = float(sum_k xq[m,k] * W[n,k]) * (row_scale[m] * SCB[n]) * (1/127^2)   (int32 accumulation)
void launch_gemm_int8(const int8_t* xq, const int8_t* W, const float* row_scale, const float* scb, float* y,
                      int64_t M, int64_t N, int64_t K, cudaStream_t stream);

}  // namespace qsae::quant::cuda
