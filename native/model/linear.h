// One linear projection of a transformer block, held at its precision: dense (fp32/bf16/fp16 storage),
// bitsandbytes 4-bit (nf4/fp4) or LLM.int8. forward() computes y = x W^T + b in the compute dtype
// (on CPU every op computes in fp32 and rounds to the activation dtype).
#pragma once
#include <ATen/ATen.h>

#include <string>

#include "quant/quant.h"

namespace qsae::model {

enum class Precision { FP32, BF16, FP16, INT8, NF4, FP4 };
const char* precision_name(Precision p);
Precision parse_precision(const std::string& s, const std::string& what = "precision");
inline bool is_quantized(Precision p) { return p == Precision::INT8 || p == Precision::NF4 || p == Precision::FP4; }
// Storage dtype of dense weights for a precision.
at::ScalarType dense_dtype(Precision p);

struct Linear {
  enum class Kind { Dense, Q4, Int8 } kind = Kind::Dense;
  at::Tensor w;  // Dense: [out, in] in storage dtype
  at::Tensor b;  // bias in storage dtype (undefined when absent)
  quant::Quant4 q4;
  quant::Int8Weight i8;
  double int8_threshold = 6.0;
  int64_t in_features = 0, out_features = 0;

  bool defined() const { return in_features > 0; }
  // x [..., in] in the activation dtype; returns [..., out] in `act` dtype.
  at::Tensor forward(const at::Tensor& x, at::ScalarType act) const;
  int64_t bytes() const;
  std::string precision() const;  // "fp32", "bf16", "nf4", "int8", ...
};

// y = x W^T + b computed in `op`. A weight stored in another dtype (bf16/fp16 on CPU) is converted in
// chunks of rows that stay in cache, never as a whole (a full conversion per call costs ~10x the GEMV).
at::Tensor dense_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, at::ScalarType op);

// Op dtype for an activation dtype on a device: on CPU half types compute in fp32.
inline at::ScalarType op_dtype(at::ScalarType act, const at::Device& dev) {
  return dev.is_cpu() && (act == at::kBFloat16 || act == at::kHalf) ? at::kFloat : act;
}

}  // namespace qsae::model
