// Fused CPU training step for SAEs: forward + hand-written backward, no autograd.
//   Encoder: one matmul with the bias folded in (addmm), then a single epilogue pass per row that applies
//   the activation and selects the active latents (relu: pre > 0; topk: the k largest; batchtopk: above the
//   batch-wide k*N-th value; jumprelu: pre > threshold) into a sparse row list. Decoder and backward then
//   touch only active latents (gather of decoder rows, per-latent accumulation of dW_dec and dW_enc), so for
//   the top-k family only the encoder matmul is dense. relu and jumprelu switch to dense matmuls when their
//   activations are dense (> 15%, dense_threshold). The top-k family at very high density (> 40%) keeps the
//   sparse decoder and dL/df but computes the two weight gradients as dense GEMMs (not while aux-k is live).
//   The inner loops have an AVX2/FMA variant (sae/kernels.h), used when the processor has it.
//   jumprelu's threshold gradient (the straight-through pseudo-derivatives of sae.h) needs dL/df only at the
//   entries within ε/2 of the threshold: the sparse path computes those few dot products, the dense path reads
//   them from dL/df in the backward epilogue (jumprelu_backward_epilogue_cpu).
// Gradients are exactly those of Sae::forward's loss  mse + l1_coef * l1 + aux_coef * aux  (checked against
// autograd in test/native/test_sae_fused.cpp). Deterministic for a fixed thread count (no atomics).
#pragma once
#include <ATen/ATen.h>

#include <string>

#include "sae/sae.h"

namespace qsae::sae {

struct LossOptions {
  double l1_coef = 0;          // relu (and batchtopk/topk when > 0); jumprelu: the weight of its L0 penalty
  bool l1_norm_weighted = false;  // not for jumprelu (its penalty counts latents)
  double aux_coef = 0;         // topk family: aux-k loss weight
  int64_t aux_k = 0;
  at::Tensor dead_mask;        // [d_sae] bool: latents counted as dead (aux-k)
  // relu, jumprelu: dense matmuls above this activation density, sparse kernels below. `qsae_bench_sae
  // --density-sweep` (two Zen 5 cores, d_in 512, d_sae 1024 and 4096, batch 4096) put the crossover near 20% for
  // both; at 15% the sparse path is 1.2-1.4x faster, at 5% 2.2-2.6x, at 50% 0.5x.
  double dense_threshold = 0.15;
  // top-k family: weight gradients as dense GEMMs above this density (k / d_sae), else per-latent sums. One
  // Zen 5 core, d_in 512, d_sae 256, batch 4096: per-latent 22 / 29 / 41 / 57 ms at 6 / 12 / 25 / 38%, dense 42 /
  // 46 / 53 / 61 ms.
  double dense_wgrad_threshold = 0.4;
};

struct StepResult {
  // Loss parts (doubles, for logging): total = mse + l1_coef*l1 + aux_coef*aux.
  double loss = 0, mse = 0, l1 = 0, l0 = 0, aux = 0;
  double batch_threshold = 0;  // batchtopk: smallest kept activation this batch
  at::Tensor fired;            // [d_sae] int64: rows in which each latent was active
  // Gradients, same shapes as the parameters (W_enc [d_in,d_sae], ...); gthreshold for jumprelu only.
  at::Tensor gW_enc, gb_enc, gW_dec, gb_dec, gthreshold;
};

// One fused forward/backward on fp32 CPU parameters. x [N, d_in] fp32.
StepResult fused_forward_backward_cpu(const Sae& s, const at::Tensor& x, const LossOptions& o);
// The fused step keeps its memory (about one step's peak) per calling thread between calls, to spare the page
// faults of fresh buffers; this frees the calling thread's. The trainer calls it when a run ends.
void release_fused_cpu_workspace();

// Reference: the same step through Sae::forward and autograd (plain ATen ops). Parameters must be leaf
// fp32 tensors; they are given requires_grad temporarily.
StepResult autograd_forward_backward(const Sae& s, const at::Tensor& x, const LossOptions& o);

// jumprelu epilogues on raw fp32 row-major buffers: the dense CPU path's own, and the CPU reference of the CUDA
// kernels launch_jumprelu_epilogue / launch_jumprelu_backward_epilogue (sae_kernels.h).
//   forward, in place on pre [B, S]: pre += b_enc (when not null); f = pre > thr ? pre : 0.
//   backward, in place on gf [B, S] (= dL/df): gthr[j] = sum over rows with |pre - thr_j| < bandwidth/2 of
//   (-thr_j * gf - l1_over_n) / bandwidth; then gf = pre > thr ? gf : 0 (= dL/dpre).
void jumprelu_epilogue_cpu(float* pre, const float* b_enc, const float* thr, float* f, int64_t B, int64_t S);
void jumprelu_backward_epilogue_cpu(float* gf, const float* pre, const float* thr, float* gthr, int64_t B, int64_t S,
                                    float l1_over_n, float bandwidth);

// The CPU inner loops in use: "avx2" when the processor has AVX2 and FMA, else (or after
// set_cpu_kernel("generic"), for tests and comparisons) "generic". set_cpu_kernel takes auto or generic.
void set_cpu_kernel(const std::string& which);
std::string cpu_kernel();

// Adam, fused: one pass per element (m, v, bias correction, update). `step` counts from 1.
void adam_step_fused_cpu(at::Tensor& p, const at::Tensor& g, at::Tensor& m, at::Tensor& v, int64_t step, double lr,
                         double beta1, double beta2, double eps);
// Decoder rows to unit norm in place: W_dec[j] /= max(||W_dec[j]||, 1e-12) (what the trainer does with ATen ops
// after every step), one pass per row, parallel only over at least 2^20 elements. In a two-thread step loop
// ATen's norm + div made the next step 7–19 ms slower (jumprelu d_sae 256, a 40 ms step; likely their OpenMP
// threads spinning into its first GEMM), this loop 0.3 ms.
void normalize_decoder_rows_cpu(at::Tensor& W_dec);

// Reference Adam in plain ATen ops (what torch.optim.Adam's single-tensor path does).
void adam_step_reference(at::Tensor& p, const at::Tensor& g, at::Tensor& m, at::Tensor& v, int64_t step, double lr,
                         double beta1, double beta2, double eps);

}  // namespace qsae::sae
