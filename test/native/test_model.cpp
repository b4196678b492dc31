// Model runtime: parity with ../shared/reference for every fixture model and precision, KV-cache decoding
// equal to a full forward, a left-padded batch equal to each sequence alone, and bad-input errors.
#include "testing.h"
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "common/error.h"
#include "io/fs.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/model.h"

using namespace qsae;
using namespace qsae::model;

namespace {

std::string shared_dir() {
  const char* e = std::getenv("QSAE_SHARED");
  return e ? e : "../shared";
}
bool have_shared() { return is_directory(join_path(shared_dir(), "models")); }
std::string model_dir(const std::string& m) { return join_path(join_path(shared_dir(), "models"), m); }
std::string ref_path(const std::string& m, const std::string& p) {
  return join_path(join_path(shared_dir(), "reference"), m + "." + p + ".safetensors");
}

double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }
double rel_err(const at::Tensor& got, const at::Tensor& ref) {
  return (got.to(at::kDouble) - ref.to(at::kDouble)).abs().max().item<double>() / max_abs(ref.to(at::kDouble));
}

// Compares logits and every hidden.{i} against a reference file; returns the worst relative error.
double compare_with(const Model& m, const std::string& ref, const std::string& label, double tol) {
  auto f = SafetensorsFile::open(ref);
  at::Tensor ids = f->get("input_ids");
  ForwardOptions o;
  o.hidden = true;
  auto r = m.forward(ids, o);
  double worst = rel_err(r.logits, f->get("logits"));
  CHECK_MESSAGE(worst <= tol, label, " logits: max|d|/max|ref| = ", worst, " > ", tol);
  for (size_t i = 0; i < r.hidden.size(); ++i) {
    std::string name = "hidden." + std::to_string(i);
    if (!f->contains(name)) continue;
    double e = rel_err(r.hidden[i], f->get(name));
    CHECK_MESSAGE(e <= tol, label, " ", name, ": max|d|/max|ref| = ", e, " > ", tol);
    worst = std::max(worst, e);
  }
  return worst;
}

LoadOptions opts_for(const std::string& p) {
  LoadOptions o;
  o.precision = parse_precision(p);
  if (is_quantized(*o.precision)) o.compute_dtype = at::kFloat;
  return o;
}

const char* kModels[] = {"tiny-llama3", "tiny-mistral", "tiny-qwen2", "tiny-qwen3", "tiny-qwen3-moe",
                         "tiny-qwen3-outliers", "tiny-qwen3-tied-sharded", "tiny-starcoder2", "tiny-gpt2"};

std::string tmp_dir(const std::string& name) {
  std::string d = "/tmp/qsae-test-model-" + std::to_string(::getpid()) + "-" + name;
  std::string cmd = "rm -rf '" + d + "' && mkdir -p '" + d + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  return d;
}

}  // namespace

TEST_CASE("model: fp32 matches the reference for every fixture model (1e-4)") {
  if (!have_shared()) {
    MESSAGE("../shared not found: skipped");
    return;
  }
  for (const char* name : kModels) {
    if (!file_exists(ref_path(name, "fp32"))) continue;
    auto m = Model::load(model_dir(name), opts_for("fp32"));
    double e = compare_with(*m, ref_path(name, "fp32"), std::string(name) + " fp32", 1e-4);
    MESSAGE(std::string(name) + " fp32: worst " + std::to_string(e));
  }
}

TEST_CASE("model: bf16 stays within 3e-2 of the fp32 reference") {
  if (!have_shared()) return;
  for (const char* name : kModels) {
    if (!file_exists(ref_path(name, "fp32"))) continue;
    auto m = Model::load(model_dir(name), opts_for("bf16"));
    CHECK((m->compute_dtype() == at::kBFloat16));
    double e = compare_with(*m, ref_path(name, "fp32"), std::string(name) + " bf16", 3e-2);
    MESSAGE(std::string(name) + " bf16: worst " + std::to_string(e));
  }
}

TEST_CASE("model: nf4 (compute fp32) matches the bitsandbytes NF4 reference (1e-3)") {
  if (!have_shared()) return;
  for (const char* name : kModels) {
    if (!file_exists(ref_path(name, "nf4"))) continue;
    auto m = Model::load(model_dir(name), opts_for("nf4"));
    double e = compare_with(*m, ref_path(name, "nf4"), std::string(name) + " nf4", 1e-3);
    MESSAGE(std::string(name) + " nf4: worst " + std::to_string(e));
  }
}

TEST_CASE("model: int8 (compute fp32) matches the LLM.int8 reference (5e-3)") {
  if (!have_shared()) return;
  for (const char* name : kModels) {
    if (!file_exists(ref_path(name, "int8"))) continue;
    auto m = Model::load(model_dir(name), opts_for("int8"));
    double e = compare_with(*m, ref_path(name, "int8"), std::string(name) + " int8", 5e-3);
    MESSAGE(std::string(name) + " int8: worst " + std::to_string(e));
  }
}
