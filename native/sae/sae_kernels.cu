// SAE CUDA kernels (see sae_kernels.h). Raw pointers + streams; no torch headers.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "sae/sae_kernels.h"

namespace qsae::sae::cuda {

namespace {

// Launch errors (bad configuration, too much shared memory, ...) surface here, not in a later torch op.
void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("qsae CUDA ") + what + ": " + cudaGetErrorString(e));
}
void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

inline int blocks_for(int64_t n, int threads, int cap = 65535 * 8) {
  int64_t b = (n + threads - 1) / threads;
  return int(b < cap ? (b < 1 ? 1 : b) : cap);
}

__global__ void encoder_epilogue_kernel(float* __restrict__ pre, const float* __restrict__ b_enc, int64_t n, int64_t S,
                                        int act, float thr) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = pre[i] + (b_enc ? b_enc[i % S] : 0.f);
    if (act == 1) v = v > 0.f ? v : 0.f;
    else if (act == 2) v = (v > 0.f && v >= thr) ? v : 0.f;
    pre[i] = v;
  }
}

__global__ void encoder_backward_epilogue_kernel(float* __restrict__ gf, const float* __restrict__ f,
                                                 const float* __restrict__ w, float l1_over_n, int64_t n, int64_t S) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float add = __fmul_rn(l1_over_n, w ? w[i % S] : 1.f);  // no FMA contraction: matches the CPU reference bit for bit
    gf[i] = f[i] > 0.f ? gf[i] + add : 0.f;
  }
}

__global__ void jumprelu_epilogue_kernel(float* __restrict__ pre, const float* __restrict__ b_enc,
                                         const float* __restrict__ thr, float* __restrict__ f, int64_t n, int64_t S) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % S;
    float v = pre[i];
    if (b_enc) v += b_enc[j];
    pre[i] = v;
    f[i] = v > thr[j] ? v : 0.f;
  }
}

// Kernels that also reduce over rows (per-latent sums) use blocks of 32 latents (a warp reads 32 adjacent
// elements of a row) x kColRows row lanes, over one chunk of rows (blockIdx.y); each block writes its chunk's
// sums to partial[chunk, j], and column_sum_kernel adds the chunks in order.
constexpr int kColRows = 8;

__device__ inline float to_f(float v) { return v; }
__device__ inline float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ inline T from_f(float v);
template <>
__device__ inline float from_f<float>(float v) { return v; }
template <>
__device__ inline __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

// The latent of this thread and the rows [b0, b1) of its block's chunk.
struct ColTile {
  int64_t j, b0, b1;
  __device__ ColTile(int64_t B, int64_t rows_per_chunk)
      : j(blockIdx.x * int64_t(32) + threadIdx.x), b0(blockIdx.y * rows_per_chunk),
        b1(b0 + rows_per_chunk < B ? b0 + rows_per_chunk : B) {}
};
// The sum of v over the row lanes of this thread's latent, valid in lane 0 (threadIdx.y == 0). Every thread of
// the block must call it; `red` may be reused after it returns.
__device__ inline float sum_over_lanes(float v, float (*red)[33]) {
  red[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  float sum = 0.f;
  if (threadIdx.y == 0)
    for (int y = 0; y < kColRows; ++y) sum += red[y][threadIdx.x];
  __syncthreads();
  return sum;
}

// relu / batch-threshold epilogue with per-latent counts and sums of f (partial[2 * chunk] and [2 * chunk + 1]).
template <typename T>
__global__ void relu_epilogue_stats_kernel(T* __restrict__ pre, const float* __restrict__ b_enc,
                                           float* __restrict__ partial, int64_t B, int64_t S, int64_t rows_per_chunk,
                                           int act, float thr) {
  __shared__ float red[kColRows][33];
  const ColTile c(B, rows_per_chunk);
  const int64_t j = c.j, b0 = c.b0, b1 = c.b1;
  float cnt = 0.f, sum = 0.f;
  if (j < S) {
    const float bj = b_enc ? b_enc[j] : 0.f;
#pragma unroll 4
    for (int64_t b = b0 + threadIdx.y; b < b1; b += kColRows) {
      const int64_t i = b * S + j;
      float v = to_f(pre[i]) + bj;
      v = (v > 0.f && (act != 2 || v >= thr)) ? v : 0.f;
      pre[i] = from_f<T>(v);
      cnt += v > 0.f ? 1.f : 0.f;
      sum += v;
    }
  }
  const float cnt_all = sum_over_lanes(cnt, red), sum_all = sum_over_lanes(sum, red);
  if (threadIdx.y == 0 && j < S) {
    partial[(2 * blockIdx.y) * S + j] = cnt_all;
    partial[(2 * blockIdx.y + 1) * S + j] = sum_all;
  }
}

__global__ void relu_stats_sum_kernel(const float* __restrict__ partial, int64_t chunks, int64_t S,
                                      int64_t* __restrict__ fired, float* __restrict__ fsum) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < S; j += int64_t(gridDim.x) * blockDim.x) {
    int64_t c = 0;
    float t = 0.f;
    for (int64_t k = 0; k < chunks; ++k) c += int64_t(partial[(2 * k) * S + j]), t += partial[(2 * k + 1) * S + j];
    fired[j] = c;
    fsum[j] = t;
  }
}

// relu backward epilogue (L1 gradient fused in) with the per-latent sums of dL/dpre.
template <typename T>
__global__ void relu_backward_stats_kernel(T* __restrict__ gf, const T* __restrict__ f, const float* __restrict__ w,
                                           float l1_over_n, float* __restrict__ partial, int64_t B, int64_t S,
                                           int64_t rows_per_chunk) {
  __shared__ float red[kColRows][33];
  const ColTile c(B, rows_per_chunk);
  const int64_t j = c.j, b0 = c.b0, b1 = c.b1;
  float acc = 0.f;
  if (j < S) {
    const float add = __fmul_rn(l1_over_n, w ? w[j] : 1.f);  // no FMA contraction with the add below (CPU reference)
#pragma unroll 4
    for (int64_t b = b0 + threadIdx.y; b < b1; b += kColRows) {
      const int64_t i = b * S + j;
      const float v = to_f(f[i]) > 0.f ? to_f(gf[i]) + add : 0.f;
      gf[i] = from_f<T>(v);
      acc += v;
    }
  }
  const float sum = sum_over_lanes(acc, red);
  if (threadIdx.y == 0 && j < S) partial[blockIdx.y * S + j] = sum;
}

// jumprelu backward: the threshold's pseudo-gradient sums, in the layout above.
__global__ void jumprelu_backward_kernel(float* __restrict__ gf, const float* __restrict__ pre,
                                         const float* __restrict__ thr, float* __restrict__ partial, int64_t B,
                                         int64_t S, int64_t rows_per_chunk, float l1_over_n, float half) {
  __shared__ float red[kColRows][33];
  const ColTile c(B, rows_per_chunk);
  const int64_t j = c.j, b0 = c.b0, b1 = c.b1;
  float acc = 0.f;
  if (j < S) {
    const float t = thr[j];
    for (int64_t b = b0 + threadIdx.y; b < b1; b += kColRows) {
      const int64_t i = b * S + j;
      const float p = pre[i], g = gf[i];
      if (fabsf(p - t) < half) acc += -t * g - l1_over_n;
      gf[i] = p > t ? g : 0.f;
    }
  }
  const float sum = sum_over_lanes(acc, red);
  if (threadIdx.y == 0 && j < S) partial[blockIdx.y * S + j] = sum;
}

// out[j] = (sum over chunks of partial[chunk, j]) / divisor, chunks in order.
__global__ void column_sum_kernel(const float* __restrict__ partial, float* __restrict__ out, int64_t chunks,
                                  int64_t S, float divisor) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < S; j += int64_t(gridDim.x) * blockDim.x) {
    float sum = 0.f;
    for (int64_t c = 0; c < chunks; ++c) sum += partial[c * S + j];
    out[j] = sum / divisor;
  }
}

// Row chunks of the column-reducing kernels: about 1024 blocks in all, at least 64 rows per chunk.
int64_t row_chunks(int64_t B, int64_t S) {
  const int64_t col_blocks = (S + 31) / 32;
  const int64_t want = (1024 + col_blocks - 1) / col_blocks, most = (B + 63) / 64;
  const int64_t c = want < most ? want : most;
  return c < 1 ? 1 : (c > 65535 ? 65535 : c);
}

// One block per row; the (index, value) pairs staged in shared memory kDecodeTile at a time; threads stride over D.
constexpr int kDecodeTile = 1024;
__global__ void topk_decode_kernel(const float* __restrict__ vals, const int64_t* __restrict__ idx,
                                   const float* __restrict__ W_dec, const float* __restrict__ b_dec,
                                   float* __restrict__ x_hat, int64_t K, int64_t D) {
  __shared__ int64_t sidx[kDecodeTile];
  __shared__ float sval[kDecodeTile];
  const int64_t b = blockIdx.x;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) x_hat[b * D + i] = b_dec ? b_dec[i] : 0.f;
  for (int64_t t0 = 0; t0 < K; t0 += kDecodeTile) {
    const int64_t n = K - t0 < kDecodeTile ? K - t0 : kDecodeTile;
    __syncthreads();  // every thread is done with the previous tile
    for (int64_t t = threadIdx.x; t < n; t += blockDim.x) {
      sidx[t] = idx[b * K + t0 + t];
      sval[t] = vals[b * K + t0 + t];
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      float acc = x_hat[b * D + i];
      for (int64_t t = 0; t < n; ++t) {
        const float v = sval[t];
        if (v != 0.f) acc += v * W_dec[sidx[t] * D + i];
      }
      x_hat[b * D + i] = acc;
    }
  }
}

// One warp per (row, entry): dot product of g[row] with the decoder row.
__global__ void topk_decode_backward_kernel(const float* __restrict__ g, const float* __restrict__ vals,
                                            const int64_t* __restrict__ idx, const float* __restrict__ W_dec,
                                            float* __restrict__ gvals, int64_t n, int64_t K, int64_t D) {
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= n) return;
  const int64_t b = warp / K;
  float acc = 0.f;
  if (vals[warp] > 0.f) {
    const float* gr = g + b * D;
    const float* wr = W_dec + idx[warp] * D;
    for (int64_t i = lane; i < D; i += 32) acc += gr[i] * wr[i];
  }
  for (int off = 16; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0) gvals[warp] = acc;
}

__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, int64_t n, float step_size, float inv_sqrt_bc2, float b1, float b2,
                            float eps) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float gi = g[i];
    float mi = b1 * m[i] + (1.f - b1) * gi;
    float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace

void launch_encoder_epilogue(float* pre, const float* b_enc, int64_t B, int64_t S, int act, float thr, cudaStream_t s) {
  const int64_t n = B * S;
  if (n == 0) return;
  encoder_epilogue_kernel<<<blocks_for(n, 256), 256, 0, s>>>(pre, b_enc, n, S, act, thr);
  check_launch("encoder_epilogue_kernel");
}

void launch_encoder_backward_epilogue(float* gf, const float* f, const float* w, float l1_over_n, int64_t B, int64_t S,
                                      cudaStream_t s) {
  const int64_t n = B * S;
  if (n == 0) return;
  encoder_backward_epilogue_kernel<<<blocks_for(n, 256), 256, 0, s>>>(gf, f, w, l1_over_n, n, S);
  check_launch("encoder_backward_epilogue_kernel");
}

void launch_jumprelu_epilogue(float* pre, const float* b_enc, const float* thr, float* f, int64_t B, int64_t S,
                              cudaStream_t s) {
  const int64_t n = B * S;
  if (n == 0) return;
  jumprelu_epilogue_kernel<<<blocks_for(n, 256), 256, 0, s>>>(pre, b_enc, thr, f, n, S);
  check_launch("jumprelu_epilogue_kernel");
}

int64_t jumprelu_backward_scratch(int64_t B, int64_t S) { return row_chunks(B, S) * S; }

void launch_jumprelu_backward_epilogue(float* gf, const float* pre, const float* thr, float* gthr, float* scratch,
                                       int64_t B, int64_t S, float l1_over_n, float bandwidth, cudaStream_t s) {
  if (S == 0) return;
  const int64_t chunks = row_chunks(B, S);
  const int64_t rows_per_chunk = (B + chunks - 1) / chunks;
  if (B > 0) {
    dim3 grid(unsigned((S + 31) / 32), unsigned(chunks)), block(32, kColRows);
    jumprelu_backward_kernel<<<grid, block, 0, s>>>(gf, pre, thr, scratch, B, S, rows_per_chunk, l1_over_n,
                                                    bandwidth / 2);
    check_launch("jumprelu_backward_kernel");
  } else {
    check_cuda(cudaMemsetAsync(scratch, 0, size_t(chunks * S) * sizeof(float), s), "cudaMemsetAsync");
  }
  column_sum_kernel<<<blocks_for(S, 256), 256, 0, s>>>(scratch, gthr, chunks, S, bandwidth);
  check_launch("column_sum_kernel");
}

namespace {
template <typename T>
void relu_epilogue_stats(T* pre, const float* b_enc, int64_t B, int64_t S, int act, float thr, int64_t* fired,
                         float* fsum, float* scratch, cudaStream_t s) {
  if (S == 0) return;
  const int64_t chunks = row_chunks(B, S);
  if (B > 0) {
    dim3 grid(unsigned((S + 31) / 32), unsigned(chunks)), block(32, kColRows);
    relu_epilogue_stats_kernel<T><<<grid, block, 0, s>>>(pre, b_enc, scratch, B, S, (B + chunks - 1) / chunks, act, thr);
    check_launch("relu_epilogue_stats_kernel");
  } else {
    check_cuda(cudaMemsetAsync(scratch, 0, size_t(2 * chunks * S) * sizeof(float), s), "cudaMemsetAsync");
  }
  relu_stats_sum_kernel<<<blocks_for(S, 256), 256, 0, s>>>(scratch, chunks, S, fired, fsum);
  check_launch("relu_stats_sum_kernel");
}

template <typename T>
void relu_backward_stats(T* gf, const T* f, const float* w, float l1_over_n, float* gsum, float* scratch, int64_t B,
                         int64_t S, cudaStream_t s) {
  if (S == 0) return;
  const int64_t chunks = row_chunks(B, S);
  if (B > 0) {
    dim3 grid(unsigned((S + 31) / 32), unsigned(chunks)), block(32, kColRows);
    relu_backward_stats_kernel<T><<<grid, block, 0, s>>>(gf, f, w, l1_over_n, scratch, B, S, (B + chunks - 1) / chunks);
    check_launch("relu_backward_stats_kernel");
  } else {
    check_cuda(cudaMemsetAsync(scratch, 0, size_t(chunks * S) * sizeof(float), s), "cudaMemsetAsync");
  }
  column_sum_kernel<<<blocks_for(S, 256), 256, 0, s>>>(scratch, gsum, chunks, S, 1.f);
  check_launch("column_sum_kernel");
}

__nv_bfloat16* as_bf16(uint16_t* p) { return reinterpret_cast<__nv_bfloat16*>(p); }
const __nv_bfloat16* as_bf16(const uint16_t* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }
}  // namespace

int64_t relu_stats_scratch(int64_t B, int64_t S) { return 2 * row_chunks(B, S) * S; }

void launch_relu_epilogue_stats(float* pre, const float* b_enc, int64_t B, int64_t S, int act, float thr,
                                int64_t* fired, float* fsum, float* scratch, cudaStream_t s) {
  relu_epilogue_stats(pre, b_enc, B, S, act, thr, fired, fsum, scratch, s);
}
void launch_relu_epilogue_stats(uint16_t* pre, const float* b_enc, int64_t B, int64_t S, int act, float thr,
                                int64_t* fired, float* fsum, float* scratch, cudaStream_t s) {
  relu_epilogue_stats(as_bf16(pre), b_enc, B, S, act, thr, fired, fsum, scratch, s);
}
void launch_relu_backward_stats(float* gf, const float* f, const float* w, float l1_over_n, float* gsum,
                                float* scratch, int64_t B, int64_t S, cudaStream_t s) {
  relu_backward_stats(gf, f, w, l1_over_n, gsum, scratch, B, S, s);
}
void launch_relu_backward_stats(uint16_t* gf, const uint16_t* f, const float* w, float l1_over_n, float* gsum,
                                float* scratch, int64_t B, int64_t S, cudaStream_t s) {
  relu_backward_stats(as_bf16(gf), as_bf16(f), w, l1_over_n, gsum, scratch, B, S, s);
}

void launch_topk_decode(const float* vals, const int64_t* idx, const float* W_dec, const float* b_dec, float* x_hat,
                        int64_t B, int64_t K, int64_t D, cudaStream_t s) {
  if (B == 0) return;
  topk_decode_kernel<<<unsigned(B), 256, 0, s>>>(vals, idx, W_dec, b_dec, x_hat, K, D);
  check_launch("topk_decode_kernel");
}

void launch_topk_decode_backward(const float* g, const float* vals, const int64_t* idx, const float* W_dec,
                                 float* gvals, int64_t B, int64_t K, int64_t D, cudaStream_t s) {
  const int64_t n = B * K;
  if (n == 0) return;
  const int threads = 256;  // 8 warps per block
  const int64_t blocks = (n * 32 + threads - 1) / threads;
  topk_decode_backward_kernel<<<unsigned(blocks), threads, 0, s>>>(g, vals, idx, W_dec, gvals, n, K, D);
  check_launch("topk_decode_backward_kernel");
}

void launch_adam_step(float* p, const float* g, float* m, float* v, int64_t n, float step_size, float inv_sqrt_bc2,
                      float b1, float b2, float eps, cudaStream_t s) {
  if (n == 0) return;
  adam_kernel<<<blocks_for(n, 256), 256, 0, s>>>(p, g, m, v, n, step_size, inv_sqrt_bc2, b1, b2, eps);
  check_launch("adam_kernel");
}

}  // namespace qsae::sae::cuda
