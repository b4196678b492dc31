// at::Tensor entry points of the CUDA glue (quant_cuda.cpp), used by linear.cpp and quant.cpp when built with CUDA.
#pragma once
#ifdef QSAE_HAVE_CUDA
#include <ATen/ATen.h>

#include "quant/quant.h"

namespace qsae::quant::cuda {
at::Tensor dequantize_4bit_cuda(const Quant4& q, at::ScalarType out);
at::Tensor linear_4bit_cuda(const at::Tensor& x, const Quant4& w, const at::Tensor& bias, at::ScalarType compute);
at::Tensor linear_int8_cuda(const at::Tensor& x, const Int8Weight& w, const at::Tensor& bias, double threshold,
                            at::ScalarType compute);
}  // namespace qsae::quant::cuda
#endif
