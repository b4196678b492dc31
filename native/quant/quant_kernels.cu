// CUDA kernels of native/quant (raw pointers + stream, no torch headers; compiled by nvcc alone).
// CPU references: dequantize_4bit / linear_4bit / linear_int8 in quant.cpp and linear.cpp; compared in
// test/native/test_quant_cuda.cpp on fresh random inputs.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <stdexcept>
#include <string>

#include "quant/quant_cuda.h"

namespace qsae::quant::cuda {

namespace {

struct Table16 {
  float v[16];
};

inline void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

__device__ __forceinline__ uint16_t float_to_bf16_bits(float f) {
  // round to nearest even (NaN kept quiet)
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// ---- 4-bit dequantize: one thread per packed byte (two outputs) ----
__global__ void dequant4_kernel(const uint8_t* __restrict__ packed, const float* __restrict__ absmax, Table16 t,
                                int64_t n, int64_t blocksize, void* __restrict__ out, int out_kind) {
  const int64_t nbytes = (n + 1) / 2;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < nbytes; b += int64_t(gridDim.x) * blockDim.x) {
    const uint8_t v = packed[b];
    const int64_t i0 = 2 * b;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t i = i0 + h;
      if (i >= n) break;
      const int c = h == 0 ? (v >> 4) : (v & 15);
      const float r = t.v[c] * absmax[i / blocksize];
      if (out_kind == 0) static_cast<float*>(out)[i] = r;
      else if (out_kind == 1) static_cast<uint16_t*>(out)[i] = float_to_bf16_bits(r);
      else static_cast<__half*>(out)[i] = __float2half_rn(r);
    }
  }
}

// ---- 4-bit GEMV for M in 1..16: one warp per output row; each lane reads 16 packed bytes (32 codes) per step ----
template <int M>
__global__ void __launch_bounds__(128) gemv4_kernel(const uint8_t* __restrict__ packed, const float* __restrict__ absmax,
                                                    Table16 t, const float* __restrict__ x, float* __restrict__ y,
                                                    int64_t N, int64_t K, int64_t blocksize) {
  const int lane = threadIdx.x & 31;
  const int64_t n = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  if (n >= N) return;
  float tab[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) tab[i] = t.v[i];
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.f;
  const uint4* row = reinterpret_cast<const uint4*>(packed + n * (K / 2));
  const int64_t chunks = K / 32;  // 32 codes per 16-byte chunk
  const int64_t row_block0 = n * (K / blocksize);
  for (int64_t c = lane; c < chunks; c += 32) {
    const uint4 q = __ldg(row + c);
    const int64_t k0 = c * 32;
    const float a = __ldg(absmax + row_block0 + k0 / blocksize);
    float w[32];
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const uint32_t byte = (words[j] >> (8 * b)) & 0xffu;
        w[j * 8 + b * 2] = tab[byte >> 4];
        w[j * 8 + b * 2 + 1] = tab[byte & 15];
      }
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float4* xv = reinterpret_cast<const float4*>(x + m * K + k0);
      float s = 0.f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float4 v = __ldg(xv + j);
        s = fmaf(w[4 * j], v.x, s);
        s = fmaf(w[4 * j + 1], v.y, s);
        s = fmaf(w[4 * j + 2], v.z, s);
        s = fmaf(w[4 * j + 3], v.w, s);
      }
      acc[m] = fmaf(s, a, acc[m]);
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float v = acc[m];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) y[m * N + n] = v;
  }
}

template <int M>
void launch_gemv4_m(const uint8_t* packed, const float* absmax, const Table16& t, const float* x, float* y, int64_t N,
                    int64_t K, int64_t blocksize, cudaStream_t stream) {
  const int warps = 4;
  const int64_t blocks = (N + warps - 1) / warps;
  gemv4_kernel<M><<<dim3(unsigned(blocks)), dim3(32 * warps), 0, stream>>>(packed, absmax, t, x, y, N, K, blocksize);
}

// ---- LLM.int8 pieces ----
__global__ void find_outliers_kernel(const float* __restrict__ x, uint8_t* __restrict__ flags, int64_t total, int64_t K,
                                     float thr) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    if (fabsf(x[i]) >= thr) flags[i % K] = 1;
}

__global__ void quant_rows_kernel(const float* __restrict__ x, const uint8_t* __restrict__ flags, int8_t* __restrict__ q,
                                  float* __restrict__ scale, int64_t K, float thr) {
  const int64_t m = blockIdx.x;
  const float* r = x + m * K;
  float mx = 0.f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const float a = fabsf(r[k]);
    if (!(thr > 0.f) || a < thr) mx = fmaxf(mx, a);
  }
  __shared__ float red[32];
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x / 32] = mx;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) red[0] = v;
  }
  __syncthreads();
  mx = red[0];
  if (threadIdx.x == 0) scale[m] = mx;
  const float s = (1.f / mx) * 127.f;  // as the CPU quant_rows: torch's 127.0 / t is reciprocal(t) * 127
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    int8_t v = 0;
    if (mx > 0.f && !flags[k]) v = int8_t(fminf(127.f, fmaxf(-127.f, rintf(r[k] * s))));
    q[m * K + k] = v;
  }
}

// One warp per output row n; loops over the M input rows, dp4a on 4-byte words.
__global__ void gemm_int8_kernel(const int8_t* __restrict__ xq, const int8_t* __restrict__ W,
                                 const float* __restrict__ rs, const float* __restrict__ scb, float* __restrict__ y,
                                 int64_t M, int64_t N, int64_t K) {
  const int lane = threadIdx.x & 31;
  const int64_t n = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  if (n >= N) return;
  const int8_t* wr = W + n * K;
  const bool vec = (K % 4 == 0);
  for (int64_t m = 0; m < M; ++m) {
    const int8_t* xr = xq + m * K;
    int acc = 0;
    if (vec) {
      const int* w4 = reinterpret_cast<const int*>(wr);
      const int* x4 = reinterpret_cast<const int*>(xr);
      for (int64_t k = lane; k < K / 4; k += 32) acc = __dp4a(__ldg(x4 + k), __ldg(w4 + k), acc);
    } else {
      for (int64_t k = lane; k < K; k += 32) acc += int(xr[k]) * int(wr[k]);
    }
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    // As linear_int8 on CPU: acc * (row_scale * SCB) / 127^2, an IEEE division (no fast-math), exact 127^2.
    if (lane == 0) y[m * N + n] = float(acc) * (rs[m] * scb[n]) / 16129.0f;
  }
}

unsigned grid_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b > 65535 * 32) b = 65535 * 32;
  return unsigned(b < 1 ? 1 : b);
}

}  // namespace

void launch_dequant4(const uint8_t* packed, const float* absmax, const float* table16, int64_t n, int64_t blocksize,
                     void* out, int out_kind, cudaStream_t stream) {
  Table16 t;
  for (int i = 0; i < 16; ++i) t.v[i] = table16[i];
  dequant4_kernel<<<grid_for((n + 1) / 2, 256), 256, 0, stream>>>(packed, absmax, t, n, blocksize, out, out_kind);
  check_launch("dequant4_kernel");
}

bool gemv4_supported(int64_t M, int64_t K, int64_t blocksize) {
  return M >= 1 && M <= 16 && K % 32 == 0 && K % blocksize == 0 && blocksize % 32 == 0;
}

void launch_gemv4(const uint8_t* packed, const float* absmax, const float* table16, const float* x, float* y,
                  int64_t M, int64_t N, int64_t K, int64_t blocksize, cudaStream_t stream) {
  if (!gemv4_supported(M, K, blocksize)) throw std::runtime_error("launch_gemv4: unsupported layout");
  Table16 t;
  for (int i = 0; i < 16; ++i) t.v[i] = table16[i];
  switch (M) {
#define QSAE_GEMV_CASE(m) \
  case m: launch_gemv4_m<m>(packed, absmax, t, x, y, N, K, blocksize, stream); break;
    QSAE_GEMV_CASE(1) QSAE_GEMV_CASE(2) QSAE_GEMV_CASE(3) QSAE_GEMV_CASE(4) QSAE_GEMV_CASE(5) QSAE_GEMV_CASE(6)
    QSAE_GEMV_CASE(7) QSAE_GEMV_CASE(8) QSAE_GEMV_CASE(9) QSAE_GEMV_CASE(10) QSAE_GEMV_CASE(11) QSAE_GEMV_CASE(12)
    QSAE_GEMV_CASE(13) QSAE_GEMV_CASE(14) QSAE_GEMV_CASE(15) QSAE_GEMV_CASE(16)
#undef QSAE_GEMV_CASE
    default: break;
  }
  check_launch("gemv4_kernel");
}

void launch_find_outliers(const float* x, uint8_t* col_is_outlier, int64_t M, int64_t K, float threshold,
                          cudaStream_t stream) {
  if (!(threshold > 0.f) || M * K == 0) return;
  find_outliers_kernel<<<grid_for(M * K, 256), 256, 0, stream>>>(x, col_is_outlier, M * K, K, threshold);
  check_launch("find_outliers_kernel");
}

void launch_quant_rows_int8(const float* x, const uint8_t* col_is_outlier, int8_t* xq, float* row_scale, int64_t M,
                            int64_t K, float threshold, cudaStream_t stream) {
  if (M == 0) return;
  quant_rows_kernel<<<unsigned(M), 256, 0, stream>>>(x, col_is_outlier, xq, row_scale, K, threshold);
  check_launch("quant_rows_kernel");
}

void launch_gemm_int8(const int8_t* xq, const int8_t* W, const float* row_scale, const float* scb, float* y, int64_t M,
                      int64_t N, int64_t K, cudaStream_t stream) {
  const int warps = 4;
  gemm_int8_kernel<<<unsigned((N + warps - 1) / warps), 32 * warps, 0, stream>>>(xq, W, row_scale, scb, y, M, N, K);
  check_launch("gemm_int8_kernel");
}

}  // namespace qsae::quant::cuda
