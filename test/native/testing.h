// Include this instead of <doctest/doctest.h> in C++ tests.
// Note: c10 declares toString(ScalarType) returning const char*, which breaks doctest's decomposition of
// `CHECK(a.scalar_type() == b)`; wrap such comparisons in extra parentheses: CHECK((a == b)).
#pragma once
#include <ATen/ATen.h>
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <functional>
#include <string>

#include "io/fs.h"

namespace qsae::testing {
// The shared fixtures: $QSAE_SHARED, else ../shared (tests run from the repository root).
inline std::string shared_dir() {
  const char* e = std::getenv("QSAE_SHARED");
  return e ? e : "../shared";
}
inline bool have_shared() { return is_directory(join_path(shared_dir(), "models")); }
inline std::string shared_model(const std::string& name) { return join_path(join_path(shared_dir(), "models"), name); }
// ../shared/reference/<model>.<precision>.safetensors
inline std::string shared_ref(const std::string& model, const std::string& precision) {
  return join_path(join_path(shared_dir(), "reference"), model + "." + precision + ".safetensors");
}

// The message of the exception f throws ("" when it throws none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}
// A fresh folder /tmp/qsae-TAG-PID-NAME (anything there before is removed); created unless create=false.
inline std::string temp_dir(const std::string& tag, const std::string& name, bool create = true) {
  std::string p = "/tmp/qsae-" + tag + "-" + std::to_string(::getpid()) + "-" + name;
  remove_tree(p);
  if (create) make_dirs(p);
  return p;
}
// step * k for random integers k in [lo, hi], fp32: operands whose products and sums are exact in fp32 (and, kept
// small, in bf16) whatever the summation order, so that two implementations see bit-identical pre-activations.
inline at::Tensor grid_values(at::IntArrayRef shape, int64_t lo, int64_t hi, double step, at::Generator& g) {
  return (at::randint(lo, hi + 1, shape, g, at::kLong).to(at::kFloat) * float(step)).contiguous();
}
}  // namespace qsae::testing
