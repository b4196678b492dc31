#include "model/linear.h"

#include "common/error.h"
#include "quant/quant.h"

namespace qsae::model {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::FP32: return "fp32";
    case Precision::BF16: return "bf16";
    case Precision::FP16: return "fp16";
    case Precision::INT8: return "int8";
    case Precision::NF4: return "nf4";
    case Precision::FP4: return "fp4";
  }
  return "?";
}

Precision parse_precision(const std::string& s, const std::string& what) {
  if (s == "fp32") return Precision::FP32;
  if (s == "bf16") return Precision::BF16;
  if (s == "fp16") return Precision::FP16;
  if (s == "int8") return Precision::INT8;
  if (s == "nf4") return Precision::NF4;
  if (s == "fp4") return Precision::FP4;
  fail_type(what, ": unknown precision '", s, "' (expected fp32, bf16, fp16, int8, nf4 or fp4)");
}

at::ScalarType dense_dtype(Precision p) {
  switch (p) {
    case Precision::BF16: return at::kBFloat16;
    case Precision::FP16: return at::kHalf;
    default: return at::kFloat;
  }
}

at::Tensor dense_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, at::ScalarType op) {
  at::Tensor xw = x.scalar_type() == op ? x : x.to(op);
  auto cvt = [&](const at::Tensor& t) { return !t.defined() || t.scalar_type() == op ? t : t.to(op); };
  if (w.scalar_type() == op) return at::linear(xw, w, cvt(b));
  const int64_t out = w.size(0), in = w.size(1);
  // <= 32768 elements per chunk: below ATen's parallel grain, so the conversion runs on the calling thread
  // (hundreds of OpenMP regions per token are slow on a busy machine) and the chunk stays in L1/L2.
  const int64_t rows = std::max<int64_t>(8, (int64_t(1) << 15) / std::max<int64_t>(1, in));
  if (rows >= out) return at::linear(xw, w.to(op), cvt(b));
  std::vector<at::Tensor> parts;
  for (int64_t o0 = 0; o0 < out; o0 += rows) {
    const int64_t c = std::min(rows, out - o0);
    parts.push_back(at::linear(xw, w.narrow(0, o0, c).to(op), b.defined() ? cvt(b.narrow(0, o0, c)) : at::Tensor()));
  }
  return at::cat(parts, -1);
}

at::Tensor Linear::forward(const at::Tensor& x, at::ScalarType act) const {
  const at::Device dev = x.device();
  const at::ScalarType op = op_dtype(act, dev);
  at::Tensor y;
  switch (kind) {
    case Kind::Dense: {
      y = dense_linear(x, w, b, op);
      break;
    }
    case Kind::Q4:
      y = quant::linear_4bit(x, q4, b, op);
      break;
    case Kind::Int8:
      y = quant::linear_int8(x, i8, b, int8_threshold, op);
      break;
  }
  return y.scalar_type() == act ? y : y.to(act);
}

int64_t Linear::bytes() const {
  int64_t n = b.defined() ? b.numel() * b.element_size() : 0;
  switch (kind) {
    case Kind::Dense: return n + w.numel() * w.element_size();
    case Kind::Q4: {
      for (const at::Tensor* t : {&q4.packed, &q4.absmax, &q4.quant_absmax, &q4.nested_absmax, &q4.nested_quant_map})
        if (t->defined() && !(q4.double_quant && t == &q4.absmax)) n += t->numel() * t->element_size();
      return n;
    }
    case Kind::Int8: return n + i8.CB.numel() * i8.CB.element_size() + i8.SCB.numel() * i8.SCB.element_size();
  }
  return n;
}

std::string Linear::precision() const {
  switch (kind) {
    case Kind::Dense:
      return w.scalar_type() == at::kBFloat16 ? "bf16" : w.scalar_type() == at::kHalf ? "fp16" : "fp32";
    case Kind::Q4: return q4.format == quant::Format::NF4 ? "nf4" : "fp4";
    case Kind::Int8: return "int8";
  }
  return "?";
}

}  // namespace qsae::model
