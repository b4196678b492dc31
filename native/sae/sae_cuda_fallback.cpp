// Without qsae's CUDA kernels (CPU-only torch): the CUDA entry points use the reference path.
#include "sae/sae_cuda.h"

#ifndef QSAE_HAVE_CUDA
namespace qsae::sae {
bool sae_cuda_kernels_built() { return false; }
StepResult cuda_forward_backward(const Sae& s, const at::Tensor& x, const LossOptions& o, bool) {
  return autograd_forward_backward(s, x, o);
}
void adam_step_cuda(at::Tensor& p, const at::Tensor& g, at::Tensor& m, at::Tensor& v, int64_t step, double lr,
                    double beta1, double beta2, double eps) {
  adam_step_reference(p, g, m, v, step, lr, beta1, beta2, eps);
}
}  // namespace qsae::sae
#endif
