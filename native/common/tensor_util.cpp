// Dtype and device helpers shared by every module.
#include "common/tensor_util.h"

#include <sstream>

#include "common/error.h"

namespace qsae {

namespace {
struct DtypeName {
  const char* st;
  const char* qsae;
  at::ScalarType type;
};
const DtypeName kDtypes[] = {
    {"F64", "fp64", at::kDouble}, {"F32", "fp32", at::kFloat}, {"F16", "fp16", at::kHalf},
    {"BF16", "bf16", at::kBFloat16}, {"I64", "int64", at::kLong}, {"I32", "int32", at::kInt},
    {"I16", "int16", at::kShort},    {"I8", "int8", at::kChar},    {"U8", "uint8", at::kByte},
    {"BOOL", "bool", at::kBool},
};
}  // namespace

bool is_known_safetensors_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.st) return true;
  return false;
}

at::ScalarType dtype_from_safetensors(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.st) return d.type;
  fail_type("unknown safetensors dtype '", name, "'");
}

std::string dtype_to_safetensors(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return d.st;
  fail_type("dtype ", c10::toString(t), " cannot be stored in safetensors");
}

at::ScalarType dtype_from_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.qsae || name == d.st) return d.type;
  if (name == "float32" || name == "float") return at::kFloat;
  if (name == "float16" || name == "half") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float64" || name == "double") return at::kDouble;
  fail_type("unknown dtype '", name, "' (expected one of fp32, bf16, fp16, fp64, int64, int32, int16, int8, uint8, bool)");
}

std::string dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return d.qsae;
  return c10::toString(t);
}

size_t dtype_size(at::ScalarType t) { return c10::elementSize(t); }

at::Device parse_device(const std::string& name) {
  if (name.empty() || name == "cpu") return at::Device(at::kCPU);
  // A second name for the CPU: distinct from "cpu" to a device map, so its code path runs without GPUs.
  if (name == "cpu:0") return at::Device(at::kCPU, 0);
  if (name.rfind("cuda", 0) == 0) {
    if (!at::hasCUDA())
      fail("device '", name, "' requested but CUDA is not available (this qsae build or machine has no GPU support)");
    int index = 0;
    if (name.size() > 4) {
      QSAE_CHECK_TYPE(name[4] == ':', "bad device name '", name, "' (expected cpu, cuda or cuda:N)");
      try {
        index = std::stoi(name.substr(5));
      } catch (...) {
        fail_type("bad device name '", name, "' (expected cpu, cuda or cuda:N)");
      }
    }
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  fail_type("bad device name '", name, "' (expected cpu, cuda or cuda:N)");
}

std::string shape_str(at::IntArrayRef shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

}  // namespace qsae
