// Launchers of the SAE CUDA kernels (sae_kernels.cu): raw pointers and a cudaStream_t, no torch headers.
// Row-major buffers, fp32 unless an overload takes bf16 (as uint16_t bits). CPU references: the fused/autograd path
// in fused_cpu.cpp, jumprelu_epilogue_cpu / jumprelu_backward_epilogue_cpu there (compared in
// test/native/test_sae_fused.cpp), and epilogue_cpu.h for the relu / batchtopk epilogues with column statistics
// (compared in test/native/test_sae_cuda.cpp), all where a GPU is present. Launch errors throw std::runtime_error.
#pragma once
#include <cstdint>

typedef struct CUstream_st* cudaStream_t;

namespace qsae::sae::cuda {

// Encoder epilogue, in place on pre [B, S] (the matmul output x @ W_enc):
//   act 0: pre += b_enc;  act 1: f = relu(pre + b_enc);  act 2: f = (pre + b_enc) if > 0 and >= thr else 0.
// b_enc may be null (no bias).
void launch_encoder_epilogue(float* pre, const float* b_enc, int64_t B, int64_t S, int act, float thr, cudaStream_t s);

// Backward epilogue with the L1 gradient fused in, in place on gf [B, S] (= dL/dx_hat @ W_dec^T):
//   gpre = f > 0 ? gf + l1_over_n * (w ? w[j] : 1) : 0
void launch_encoder_backward_epilogue(float* gf, const float* f, const float* w, float l1_over_n, int64_t B, int64_t S,
                                      cudaStream_t s);

// jumprelu encoder epilogue: pre += b_enc in place on pre [B, S] (b_enc may be null; pre is kept for the
// threshold window of the backward), and f [B, S] = pre > thr[j] ? pre : 0.
void launch_jumprelu_epilogue(float* pre, const float* b_enc, const float* thr, float* f, int64_t B, int64_t S,
                              cudaStream_t s);

// Its backward, in place on gf [B, S] (= dL/df = dL/dx_hat @ W_dec^T), with the threshold's straight-through
// pseudo-derivatives (sae.h) fused in:
//   gthr[j] = sum over rows with |pre - thr[j]| < bandwidth/2 of (-thr[j] * gf - l1_over_n) / bandwidth;
//   gf = pre > thr ? gf : 0  (= dL/dpre).
// One read of gf and pre. The column sums are split over row chunks into `scratch` (floats, at least
// jumprelu_backward_scratch(B, S)), then added in chunk order: deterministic, no atomics.
int64_t jumprelu_backward_scratch(int64_t B, int64_t S);
void launch_jumprelu_backward_epilogue(float* gf, const float* pre, const float* thr, float* gthr, float* scratch,
                                       int64_t B, int64_t S, float l1_over_n, float bandwidth, cudaStream_t s);

// relu / batchtopk epilogues with the step's column statistics fused in, so that nothing else has to read the
// [B, S] activations. They exist for fp32 and for bf16 activations (the tensor-core path, whose GEMMs read and
// write bf16); bf16 crosses this interface as its raw 16-bit patterns (uint16_t), and both compute in fp32.
// Column sums are split over row chunks into `scratch` (floats, at least relu_stats_scratch(B, S)) and then added
// in chunk order: deterministic, no atomics. The CPU references are relu_epilogue_stats_cpu and
// relu_backward_stats_cpu (sae/epilogue_cpu.h).
//   forward, in place on pre [B, S] (the encoder matmul output): v = pre + (b_enc ? b_enc[j] : 0);
//     f = v > 0 (act 1, relu), or v > 0 and v >= thr (act 2, batch threshold) ? v : 0;
//     fired[j] = rows with f > 0, fsum[j] = sum of f over rows (of the fp32 values, before any bf16 rounding).
//   backward, in place on gf [B, S] (= dL/dx_hat @ W_dec^T): gpre = f > 0 ? gf + l1_over_n * (w ? w[j] : 1) : 0;
//     gsum[j] = sum of gpre over rows (= dL/db_enc), before rounding.
int64_t relu_stats_scratch(int64_t B, int64_t S);
void launch_relu_epilogue_stats(float* pre, const float* b_enc, int64_t B, int64_t S, int act, float thr,
                                int64_t* fired, float* fsum, float* scratch, cudaStream_t s);
void launch_relu_epilogue_stats(uint16_t* pre, const float* b_enc, int64_t B, int64_t S, int act, float thr,
                                int64_t* fired, float* fsum, float* scratch, cudaStream_t s);
void launch_relu_backward_stats(float* gf, const float* f, const float* w, float l1_over_n, float* gsum,
                                float* scratch, int64_t B, int64_t S, cudaStream_t s);
void launch_relu_backward_stats(uint16_t* gf, const uint16_t* f, const float* w, float l1_over_n, float* gsum,
                                float* scratch, int64_t B, int64_t S, cudaStream_t s);

// Sparse decoder: x_hat[b] = (b_dec ? b_dec : 0) + sum_t vals[b,t] * W_dec[idx[b,t]]   (gather of K rows).
void launch_topk_decode(const float* vals, const int64_t* idx, const float* W_dec, const float* b_dec, float* x_hat,
                        int64_t B, int64_t K, int64_t D, cudaStream_t s);

// Its backward: gvals[b,t] = vals[b,t] > 0 ? g[b] . W_dec[idx[b,t]] : 0  (one warp per entry).
void launch_topk_decode_backward(const float* g, const float* vals, const int64_t* idx, const float* W_dec,
                                 float* gvals, int64_t B, int64_t K, int64_t D, cudaStream_t s);

// Fused Adam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps).
void launch_adam_step(float* p, const float* g, float* m, float* v, int64_t n, float step_size, float inv_sqrt_bc2,
                      float b1, float b2, float eps, cudaStream_t s);

}  // namespace qsae::sae::cuda
