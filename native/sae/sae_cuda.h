// CUDA training step for SAEs. The kernels (sae_kernels.cu: raw pointers + cudaStream_t, no torch) are
// launched by sae_cuda.cpp (QSAE_SAE_CUDA_GLUE, built only with a CUDA torch):
//   - fused encoder epilogue: bias + activation (relu / batch threshold) in one pass over the matmul output,
//     and its backward epilogue: dL/dpre = (dL/df + l1 * w_j / N) * [f > 0] (the L1 gradient fused in);
//   - jumprelu's: f = pre * [pre > thr], and a backward epilogue that masks dL/df and sums the threshold's
//     straight-through pseudo-gradient (sae.h) in the same pass over dL/df;
//   - sparse top-k decoder: x_hat = b_dec + sum over the k kept latents of value * W_dec[row] (a gather of
//     k decoder rows per token) and its backward (dL/dvalue = g . W_dec[row]);
//   - fused Adam step.
// Matmuls go through cuBLAS (at::mm), in bf16 with fp32 master weights when `bf16_matmul` is set.
// Without CUDA, these entry points fall back to the reference path (autograd + ATen Adam) on any device.
#pragma once
#include <ATen/ATen.h>

#include "sae/fused_cpu.h"

namespace qsae::sae {

bool sae_cuda_kernels_built();

// Same contract as fused_forward_backward_cpu, on CUDA tensors (relu, topk, batchtopk, jumprelu).
StepResult cuda_forward_backward(const Sae& s, const at::Tensor& x, const LossOptions& o, bool bf16_matmul = false);
void adam_step_cuda(at::Tensor& p, const at::Tensor& g, at::Tensor& m, at::Tensor& v, int64_t step, double lr,
                    double beta1, double beta2, double eps);

}  // namespace qsae::sae
