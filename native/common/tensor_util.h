// Small tensor helpers shared by every module: dtype names, device parsing, argument checks.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace qsae {

// safetensors dtype names ("F32", "BF16", ...) <-> torch scalar types.
at::ScalarType dtype_from_safetensors(const std::string& name);  // throws on unknown
std::string dtype_to_safetensors(at::ScalarType t);               // throws on unsupported
bool is_known_safetensors_dtype(const std::string& name);
size_t dtype_size(at::ScalarType t);

// qsae's user-facing names: "fp32", "bf16", "fp16", "int8", ... <-> torch scalar types.
at::ScalarType dtype_from_name(const std::string& name);  // throws TypeError on unknown
std::string dtype_name(at::ScalarType t);

// "cpu", "cuda", "cuda:1" -> device; a CUDA device when CUDA is missing is a clear error.
at::Device parse_device(const std::string& name);

std::string shape_str(at::IntArrayRef shape);

// On CPU, bf16/fp16 math is slow or missing in Debian's torch: compute in fp32 there.
inline at::ScalarType cpu_compute_dtype(at::ScalarType storage) {
  return (storage == at::kBFloat16 || storage == at::kHalf) ? at::kFloat : storage;
}

}  // namespace qsae
